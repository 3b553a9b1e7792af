"""A driver killed mid-stage (SIGKILL, no mocks) and rerun with the same command continues the
stage from its newest Ray Train checkpoint, not from step 0.

One pipeline, sft -> rl, three runs of the same command:
  1. SIGKILL the driver once SFT's first checkpoint is registered;
  2. rerun: SFT resumes from that checkpoint and finishes; SIGKILL once RL's first checkpoint is registered;
  3. rerun: SFT is skipped (finished), RL resumes from its checkpoint and finishes.
The Train run names follow the stage fingerprint, so each rerun finds the run it left.
"""

from __future__ import annotations

import json
import os
import re

import pytest
import yaml

from fnsft.testing import EXAMPLES, TINY, kill_driver_after_checkpoint, start_pipeline

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

# Long enough that the kill (after the first registered checkpoint: a Train controller poll,
# 0.5 s, plus this test's 0.5 s poll) lands mid-stage: 24 tiny steps finished inside that window.
SFT_STEPS, SFT_SAVE = 96, 8
RL_ITERS, RL_SAVE = 10, 2


def _config(tmp_path) -> str:
    cfg = {
        "model_name_or_path": TINY, "output_dir": str(tmp_path / "out"), "stages": ["sft", "rl"],
        "stage_configs": {
            "sft": {"dataset_name_or_path": os.path.join(EXAMPLES, "sample_data.jsonl"), "max_steps": SFT_STEPS,
                    "save_steps": SFT_SAVE, "per_device_train_batch_size": 4, "max_length": 64,
                    "learning_rate": 1e-3, "eval_split": 0.0, "report_to": ["none"], "logging_steps": 1},
            "rl": {"dataset_name_or_path": os.path.join(EXAMPLES, "arithmetic", "train.jsonl"), "algorithm": "grpo",
                   "num_iterations": RL_ITERS, "save_steps": RL_SAVE, "prompts_per_iteration": 4,
                   "num_generations": 2, "max_new_tokens": 6, "learning_rate": 3e-3, "kl_coef": 0.0,
                   "rewards": [{"type": "target_chars", "chars": "the"}], "report_to": ["none"],
                   "logging_steps": 100},
        },
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _steps(log_path) -> list[int]:
    """Training steps the SFT progress lines of one run show, in order."""
    return [int(m) for m in re.findall(r"\[sft\] step (\d+)/", open(log_path).read())]


def test_killed_driver_resumes_sft_then_rl_from_their_checkpoints(tmp_path):
    config = _config(tmp_path)
    out = tmp_path / "out"

    first = start_pipeline(config, str(tmp_path / "run1.log"))
    kill_driver_after_checkpoint(first, out, "sft")
    assert max(_steps(tmp_path / "run1.log")) >= SFT_SAVE

    second = start_pipeline(config, str(tmp_path / "run2.log"))
    kill_driver_after_checkpoint(second, out, "rl")
    log2 = open(tmp_path / "run2.log").read()
    steps = _steps(tmp_path / "run2.log")
    assert steps and steps[0] > SFT_SAVE, f"the rerun trained from step {steps[:1]}, not after a checkpoint:\n{log2[-3000:]}"
    assert steps[-1] == SFT_STEPS
    summary = json.loads((out / "pipeline_summary.json").read_text())
    sft = summary["stages"]["sft"]
    assert sft["status"] == "completed"
    assert sft["metrics"]["resumed_from_step"] % SFT_SAVE == 0 and sft["metrics"]["resumed_from_step"] >= SFT_SAVE
    assert sft["metrics"]["global_step"] == SFT_STEPS

    third = start_pipeline(config, str(tmp_path / "run3.log"))
    assert third.wait(timeout=900) == 0, open(tmp_path / "run3.log").read()[-4000:]
    log3 = open(tmp_path / "run3.log").read()
    assert "Stage sft already completed" in log3 and not _steps(tmp_path / "run3.log")
    summary = json.loads((out / "pipeline_summary.json").read_text())
    rl = summary["stages"]["rl"]
    assert rl["status"] == "completed"
    assert rl["metrics"]["resumed_from_iteration"] >= RL_SAVE
    assert rl["metrics"]["resumed_from_iteration"] % RL_SAVE == 0
    with open(rl["artifacts"]["rl_history"]) as f:
        history = json.load(f)
    assert [h["iteration"] for h in history] == list(range(1, RL_ITERS + 1))  # restored, then continued
    assert "resuming from" in log3
