"""RLAIF mode reward_model: judge-labelled pairs train a reward model, then PPO runs against it.

The function judge scores the share of answer characters in {t, h, e} (dense, learnable). The
reward model (the tiny policy + a scalar head, TRL's RewardTrainer in a Ray Train job) must rank
held-back pairs clearly above chance, and PPO against it must raise the held-out judged score.
"""

import json
import os

import pytest

from fnsft.pipeline.driver import Pipeline
from fnsft.testing import EXAMPLES, TINY

FNS = os.path.join(os.path.dirname(__file__), "judge_fns.py")


def reward_model_config(out, **stage):
    s = {"dataset_name_or_path": os.path.join(EXAMPLES, "arithmetic", "train.jsonl"), "mode": "reward_model",
         "judge": {"type": "function", "function": f"{FNS}:the_share", "score_range": [0, 1]},
         "reward_model": {"num_generations": 4, "eval_split": 0.2, "learning_rate": 2e-3, "num_train_epochs": 2,
                          "per_device_train_batch_size": 16},
         "num_iterations": 20, "prompts_per_iteration": 8, "num_generations": 4, "max_new_tokens": 10,
         # 5e-4: above it PPO games the reward model (held-out judged score falls to 0 while the reward
         # model's score rises) when the tiny model trains in float32 (CPUs without AMX-BF16 pick it):
         # 1e-3 did on 2026-12-07 (0.228 -> 0.000), deterministically; 5e-4 and 7e-4 reach 0.5 in
         # float32, 5e-4 in bfloat16 too.
         "learning_rate": 5e-4, "kl_coef": 0.01,
         "eval_dataset_path": os.path.join(EXAMPLES, "arithmetic", "eval.jsonl"),
         "report_to": ["none"], "save_intermediate": False, "logging_steps": 100,
         "generation": {"num_cpus": 1}, "reward": {"num_cpus": 0.25}, "reference": {"num_cpus": 0.5}}
    s.update(stage)
    return {"model_name_or_path": TINY, "output_dir": str(out), "stages": ["rlaif"],
            "resources": {"num_workers": 1}, "deepspeed": {"zero_stage": 2}, "stage_configs": {"rlaif": s}}


@pytest.mark.slow
def test_reward_model_mode_learns_the_judge_then_ppo_raises_the_judged_score(ray_session, tmp_path):
    summary = Pipeline.from_dict(reward_model_config(tmp_path / "run")).run()
    st = summary["stages"]["rlaif"]
    m = st["metrics"]
    acc0, acc = m["reward_model_before_heldout_accuracy"], m["reward_model_heldout_accuracy"]
    start, end = m["eval_judge_start"], m["eval_judge_end"]
    print(f"rlaif reward_model: {m['reward_model_train_pairs']} pairs, held-out pair accuracy {acc0:.3f} -> {acc:.3f} "
          f"({m['reward_model_eval_pairs']} pairs); PPO: held-out judged score {start:.3f} -> {end:.3f}, "
          f"win rate {m['win_rate']:.3f}")
    assert m["algorithm"] == "ppo"
    # Chance is 0.5; 3+ standard errors above it on the held-back pairs.
    assert m["reward_model_eval_pairs"] >= 50 and acc > 0.7, (acc0, acc)
    assert end > start + 0.1, f"held-out judged score {start:.3f} -> {end:.3f}"
    # The loop's reward was the reward model (no judge call per iteration).
    with open(st["artifacts"]["rl_history"]) as f:
        history = json.load(f)
    assert all("reward/reward_model" in h and "judge/calls" not in h for h in history)
    rm_dir = st["artifacts"]["reward_model"]
    assert os.path.isfile(os.path.join(rm_dir, "model.safetensors"))
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in os.listdir(rm_dir))
    with open(st["artifacts"]["preference_pairs"]) as f:
        pairs = [json.loads(line) for line in f]
    assert len(pairs) == m["preference_pairs"] == m["reward_model_train_pairs"] + m["reward_model_eval_pairs"]
    assert all(p["score_chosen"] > p["score_rejected"] and {"prompt", "chosen", "rejected"} <= set(p) for p in pairs)
    held = {p["prompt"] for p in pairs if p["split"] == "eval"}
    assert held and not held & {p["prompt"] for p in pairs if p["split"] == "train"}
