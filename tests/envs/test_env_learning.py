"""Multi-turn RL on the tiny model, end to end on Ray: a two-turn environment whose reward depends
on the reply *after* the environment's message learns (grpo, ppo), the first and last iterations'
transcripts are saved, and only the model's own tokens were trained on."""

import json
import os

import pytest

from fnsft.pipeline.driver import Pipeline
from fnsft.testing import EXAMPLES, TINY

pytestmark = pytest.mark.slow

FIXTURES = os.path.join(os.path.dirname(__file__), "env_fixtures.py")
PROMPTS = os.path.join(EXAMPLES, "arithmetic", "train.jsonl")


def run_env_stage(tmp_path, algorithm, environment, top=None, **rl):
    stage = {
        "dataset_name_or_path": PROMPTS, "algorithm": algorithm, "num_iterations": 15,
        "prompts_per_iteration": 8, "num_generations": 4, "max_new_tokens": 6, "learning_rate": 1e-2,
        "ppo_epochs": 1, "num_mini_batches": 1, "kl_coef": 0.0, "environment": environment, "report_to": ["none"], "save_intermediate": False,
        "logging_steps": 100, "save_steps": 0, "generation": {"num_cpus": 1}, "reward": {"num_cpus": 0.25},
        "reference": {"num_cpus": 0.5},
    }
    stage.update(rl)
    cfg = {"model_name_or_path": TINY, "output_dir": str(tmp_path / algorithm), "stages": ["rl"],
           "resources": {"num_workers": 1}, "deepspeed": {"enabled": False}, "stage_configs": {"rl": stage}}
    cfg.update(top or {})
    rl_out = Pipeline.from_dict(cfg).run()["stages"]["rl"]
    with open(rl_out["artifacts"]["rl_history"]) as f:
        history = json.load(f)
    return rl_out, history


def check_two_turn_learning(rl_out, history, margin):
    metrics = rl_out["metrics"]
    start, end = metrics["reward_start"], metrics["reward_end"]
    print(f"{metrics['algorithm']}: reward {start:.3f} -> {end:.3f}")
    assert end > start + margin, f"{metrics['algorithm']} did not learn: reward {start:.3f} -> {end:.3f}"
    assert all(h["env/turns_mean"] == 2.0 and h["env/failed_share"] == 0.0 for h in history)
    # the environment's turn sits between the replies and is not trained on
    assert all(h["env/episode_tokens"] > h["response_length"] for h in history)
    folder = os.path.join(os.path.dirname(rl_out["artifacts"]["rl_history"]), "transcripts")
    saved = sorted(os.listdir(folder))
    assert saved == ["iteration-0001.json", f"iteration-{len(history):04d}.json"]
    with open(os.path.join(folder, saved[-1])) as f:
        episode = json.load(f)[0]
    assert [m["role"] for m in episode["messages"]] == ["user", "assistant", "user", "assistant"]
    assert episode["messages"][2]["content"] == "Now reply again."


def test_two_turn_environment_learns_grpo(ray_session, tmp_path):
    # held-out prompts, greedy episodes before and after: the policy itself improved
    rl_out, history = run_env_stage(tmp_path, "grpo", {"class": f"{FIXTURES}:SecondReplyEnv", "max_turns": 2},
                                    eval_dataset_path=os.path.join(EXAMPLES, "arithmetic", "eval.jsonl"),
                                    num_iterations=30)
    check_two_turn_learning(rl_out, history, margin=0.15)
    start, end = rl_out["metrics"]["eval_reward_start"], rl_out["metrics"]["eval_reward_end"]
    assert end > start + 0.1, f"held-out greedy reward {start:.3f} -> {end:.3f}"


def test_two_turn_environment_learns_ppo(ray_session, tmp_path):
    # critic + GAE over the whole transcript, KL to a reference actor in the reward
    rl_out, history = run_env_stage(tmp_path, "ppo", {"class": f"{FIXTURES}:SecondReplyEnv", "max_turns": 2},
                                    kl_coef=0.01, num_iterations=30)
    check_two_turn_learning(rl_out, history, margin=0.15)
    assert rl_out["metrics"]["reference"] == "actor" and all("value_loss" in h and "kl" in h for h in history)
