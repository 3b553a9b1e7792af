"""End to end: the RL stage (PPO: policy + value head) in ``torch_dtype: bfloat16`` on the tiny
model — it used to fail at the first value forward (bf16 hidden state, fp32 head)."""

from __future__ import annotations

import os

import pytest

from fnsft.testing import EXAMPLES, TINY


@pytest.mark.slow
@pytest.mark.long  # CI: bf16 autocast and float32 master weights in tests/precision (torch only)
def test_ppo_stage_runs_in_bfloat16(tmp_path, ray_session):
    from fnsft.pipeline import Pipeline

    cfg = {"model_name_or_path": TINY, "output_dir": str(tmp_path / "out"), "stages": ["rl"],
           "torch_dtype": "bfloat16", "resources": {"num_workers": 1}, "deepspeed": {"zero_stage": 2},
           "stage_configs": {"rl": {
               "dataset_name_or_path": os.path.join(EXAMPLES, "arithmetic", "train.jsonl"), "algorithm": "ppo",
               "num_iterations": 2, "prompts_per_iteration": 4, "num_generations": 2, "max_new_tokens": 6,
               "learning_rate": 1e-3, "top_k": 20, "top_p": 0.9, "gradient_checkpointing": True,
               "rewards": [{"type": "target_chars", "chars": "the"}], "report_to": ["none"],
               "generation": {"num_replicas": 1, "num_cpus": 0.5}}}}
    summary = Pipeline.from_dict(cfg).run()
    stage = summary["stages"]["rl"]
    assert stage["status"] == "completed", stage
    m = stage["metrics"]
    assert m["iterations"] == 2 and "final_value_loss" in m
    assert abs(m["final_ratio_mean"] - 1.0) < 0.05  # same distribution as sampled: ratios start at 1
