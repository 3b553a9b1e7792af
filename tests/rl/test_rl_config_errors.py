"""The RL stage rejects bad configs before Ray starts, with the key at fault in the message."""

import os

import pytest

from fnsft.errors import ConfigError
from fnsft.pipeline.plan import build_plan
from fnsft.testing import EXAMPLES, TINY

PROMPTS = os.path.join(EXAMPLES, "arithmetic", "train.jsonl")


def _cfg(tmp_path, top=None, **rl):
    stage = {"dataset_name_or_path": PROMPTS, "rewards": [{"type": "exact_match", "column": "answer"}]}
    stage.update(rl)
    cfg = {"model_name_or_path": TINY, "output_dir": str(tmp_path), "stages": ["rl"], "stage_configs": {"rl": stage}}
    cfg.update(top or {})
    return cfg


def test_valid_config_builds_a_plan(tmp_path):
    plan = build_plan(data=_cfg(tmp_path, algorithm="ppo"))
    stage = plan.stages[0].stage
    assert stage.config.algorithm == "ppo" and stage.config.kl_in_reward_resolved
    assert "ppo" in stage.describe_plan()["algorithm"]


@pytest.mark.parametrize("rl, key, match", [
    ({"algorithm": "ddpg"}, "stage_configs.rl.algorithm", "unknown algorithm 'ddpg'"),
    ({"rewards": []}, "stage_configs.rl.rewards", "no reward given"),
    ({"rewards": [{"type": "function", "function": "no_such_pkg_abc.rewards:score"}]},
     "stage_configs.rl.rewards[0].function", "not found"),
    ({"rewards": [{"type": "function", "function": "fnsft.rl.rewards:missing"}]},
     "stage_configs.rl.rewards[0].function", "has no function"),
    ({"rewards": [{"type": "bleu"}]}, "stage_configs.rl.rewards[0].type", "not accepted"),
    ({"dataset_name_or_path": "/nonexistent/prompts.jsonl"}, "stage_configs.rl.dataset_name_or_path", "not found"),
    ({"algorithm": "grpo", "num_generations": 1}, "stage_configs.rl.num_generations", ">= 2"),
    ({"algorithm": "rloo", "num_generations": 1}, "stage_configs.rl.num_generations", ">= 2"),
    ({"temperature": 0}, "stage_configs.rl.temperature", "> 0"),
    ({"kl_target": -1.0}, "stage_configs.rl.kl_target", "> 0"),
    ({"reference": {"mode": "policy"}}, "stage_configs.rl.reference.mode", "use_peft"),
    ({"generation": {"engine": "tgi"}}, "stage_configs.rl.generation.engine", "not accepted"),
    ({"prompts_per_iteration": 1, "num_generations": 2, "num_mini_batches": 4},
     "stage_configs.rl.num_mini_batches", "cannot fill"),
    ({"deepspeed": {"zero_stage": 3}, "resources": {"num_workers": 2}}, "stage_configs.rl.deepspeed.zero_stage",
     "ZeRO 0-2"),
    ({"num_iteratons": 3}, "stage_configs.rl.num_iteratons", "did you mean 'num_iterations'"),
    ({"eval_dataset_path": "no_such_eval.jsonl"}, "stage_configs.rl.eval_dataset_path", "not found"),
    ({"eval_max_new_tokens": 0}, "stage_configs.rl.eval_max_new_tokens", ">= 1"),
    ({"eval_split": 1.5}, "stage_configs.rl.eval_split", "[0, 1)"),
])
def test_bad_config_names_the_key(tmp_path, rl, key, match):
    with pytest.raises(ConfigError) as e:
        build_plan(data=_cfg(tmp_path, **rl))
    msg = str(e.value)
    assert key in msg and match in msg, msg


def test_prompt_file_without_prompt_column(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "no prompt here"}\n')
    with pytest.raises(ConfigError, match="prompt"):
        build_plan(data=_cfg(tmp_path, dataset_name_or_path=str(bad)))
