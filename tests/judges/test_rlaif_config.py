"""The RLAIF stage's config: a plan from a good one; one line naming the key for bad ones (no Ray)."""

import os

import pytest
import yaml

from fnsft.errors import ConfigError
from fnsft.pipeline.plan import build_plan
from fnsft.testing import EXAMPLES, TINY, run_cli

FNS = os.path.join(os.path.dirname(__file__), "judge_fns.py")
PROMPTS = os.path.join(EXAMPLES, "arithmetic", "train.jsonl")


def _cfg(tmp_path, **stage):
    s = {"dataset_name_or_path": PROMPTS, "judge": {"type": "function", "function": f"{FNS}:the_share",
                                                   "score_range": [0, 1]}}
    s.update(stage)
    return {"model_name_or_path": TINY, "output_dir": str(tmp_path), "stages": ["rlaif"],
            "stage_configs": {"rlaif": s}}


def test_plan_defaults_to_ppo_and_the_judge_only(tmp_path):
    stage = build_plan(data=_cfg(tmp_path)).stages[0].stage
    assert stage.config.algorithm == "ppo" and stage.config.mode == "reward"
    plan = stage.describe_plan()
    assert plan["rewards"] == "the judge only" and "function pointwise" in plan["judge"]
    # rule rewards may be summed with the judge
    stage = build_plan(data=_cfg(tmp_path, rewards=[{"type": "regex", "pattern": "\\d"}])).stages[0].stage
    assert len(stage.parse_rewards()) == 1


@pytest.mark.parametrize("stage, key, match", [
    ({"judge": {"type": "oracle"}}, "stage_configs.rlaif.judge.type", "unknown judge type 'oracle'"),
    ({"judge": {"type": "local", "template": "Score {response}"}}, "stage_configs.rlaif.judge.template",
     "needs {prompt}"),
    ({"judge": {"type": "local", "score_range": [5, 1]}}, "stage_configs.rlaif.judge.score_range", "low must be below"),
    ({"judge": {"type": "local", "constitution_path": "/no/such/file.yaml"}},
     "stage_configs.rlaif.judge.constitution_path", "cannot read"),
    ({"judge": {"type": "local", "kind": "pairwise"}}, "stage_configs.rlaif.judge.kind", "mode reward ranks completions by a score each"),
    ({"mode": "ranking"}, "stage_configs.rlaif.mode", "unknown mode 'ranking'"),
    ({"reward_model": {"num_generations": 4}}, "stage_configs.rlaif.reward_model", "only used by mode: reward_model"),
    ({"mode": "reward_model", "reward_model": {"num_generations": 1}},
     "stage_configs.rlaif.reward_model.num_generations", "use >= 2"),
    ({"mode": "reward_model", "reward_model": {"eval_split": 0}}, "stage_configs.rlaif.reward_model.eval_split",
     "must be in (0, 1)"),
    ({"mode": "reward_model", "reward_model": {"learning_rate": -1}},
     "stage_configs.rlaif.reward_model.learning_rate", "must be > 0"),
    ({"mode": "reward_model", "reward_model": {"model_name_or_path": "/no/such/rm"}},
     "stage_configs.rlaif.reward_model.model_name_or_path", "not a model folder"),
    ({"mode": "reward_model", "reward_model": {"epochs": 2}}, "stage_configs.rlaif.reward_model", "epochs"),
    ({"generation": {"score_chunks": -1}}, "stage_configs.rlaif.generation.score_chunks", "must be >= 1"),
    ({"algorithm": "ddpg"}, "stage_configs.rlaif.algorithm", "unknown algorithm"),
    ({"rewards": [{"type": "regex", "pattern": "a", "name": "judge"}]}, "stage_configs.rlaif.rewards",
     "the name of the stage's judge term"),
])
def test_bad_input_names_the_key(tmp_path, stage, key, match):
    with pytest.raises(ConfigError) as e:
        build_plan(data=_cfg(tmp_path, **stage))
    msg = str(e.value)
    assert msg.startswith(key) and match in msg and "\n" not in msg, msg


def test_reward_model_mode_plan_and_pairwise_judge(tmp_path):
    """mode reward_model accepts a pairwise judge (it labels pairs in both orders) and any RL algorithm."""
    pairwise = {"type": "function", "function": f"{FNS}:longer", "kind": "pairwise"}
    stage = build_plan(data=_cfg(tmp_path, mode="reward_model", judge=pairwise, algorithm="grpo")).stages[0].stage
    plan = stage.describe_plan()
    assert "TRL RewardTrainer" in plan["reward_model"] and "grpo" in plan["reward_model"]
    assert plan["rewards"] == "the trained reward model"
    assert build_plan(data=_cfg(tmp_path, mode="reward_model")).stages[0].stage.config.algorithm == "ppo"


def test_cli_dry_run_prints_one_line_and_exits_2(tmp_path):
    cfg = _cfg(tmp_path, judge={"type": "function"})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    r = run_cli("--config", str(path), "--dry_run")
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if "judge" in ln]
    assert len(lines) == 1 and "stage_configs.rlaif.judge.function" in lines[0]
    assert "RAY_IMPORTED=False" in r.stdout or "RAY_IMPORTED" not in r.stdout


def test_preference_mode_resolves_its_algorithm_where_the_config_is_made(tmp_path):
    """The config says online_dpo before validation, and validating (once or twice) changes nothing."""
    import dataclasses

    from fnsft.config.parse import parse_dataclass
    from fnsft.stages.rlaif import RLAIFConfig

    section = _cfg(tmp_path, mode="preference", num_generations=2)["stage_configs"]["rlaif"]
    parsed = parse_dataclass(RLAIFConfig, section, "stage_configs.rlaif", fixed={"stage_name": "rlaif"})
    assert parsed.algorithm == "online_dpo"
    stage = build_plan(data=_cfg(tmp_path, mode="preference", num_generations=2)).stages[0].stage
    before = dataclasses.asdict(stage.config)
    stage.validate_config()
    assert dataclasses.asdict(stage.config) == before and before == dataclasses.asdict(parsed) | {
        "output_dir": before["output_dir"]}
    with pytest.raises(ConfigError) as e:
        build_plan(data=_cfg(tmp_path, mode="preference", algorithm="grpo"))
    assert str(e.value).startswith("stage_configs.rlaif.algorithm: mode preference trains with online_dpo")
