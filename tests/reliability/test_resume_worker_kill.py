"""SIGKILL one of two Train workers under DeepSpeed ZeRO-2 (no mocks): Ray restarts the worker
group from the newest registered checkpoint and the stage completes — with the loss at every
step equal to an uninterrupted run's (the README's resume claim).

Every rank reads that checkpoint in place (fnsft.workers.resume): none deletes or copies
into a folder another rank reads, so the restore cannot race.
"""

from __future__ import annotations

import json
import os

import pytest

from fnsft.pipeline import Pipeline
from fnsft.testing import KillAfterCheckpoint, tiny_sft_config

pytestmark = pytest.mark.slow


STEPS, SAVE = 30, 10


def _config(out) -> dict:
    cfg = tiny_sft_config(out, max_steps=STEPS, save_steps=SAVE, eval_split=0.0, per_device_train_batch_size=4,
                          learning_rate=1e-3, logging_steps=1)
    cfg["deepspeed"] = {"zero_stage": 2}
    cfg["resources"] = {"num_workers": 2, "max_failures": 1}
    return cfg


def _losses(summary) -> dict[int, float]:
    with open(summary["stages"]["sft"]["artifacts"]["log_history"]) as f:
        return {e["step"]: e["loss"] for e in json.load(f) if "loss" in e}


def test_killed_zero2_worker_resumes_from_checkpoint(tmp_path, ray_session):
    uninterrupted = _losses(Pipeline.from_dict(_config(tmp_path / "plain")).run())
    with KillAfterCheckpoint(tmp_path / "out", "01_sft", "sft", rank=1) as killer:
        summary = Pipeline.from_dict(_config(tmp_path / "out")).run()
    assert killer.pid, "the worker was never killed (training ended before the first checkpoint?)"
    stage = summary["stages"]["sft"]
    assert stage["status"] == "completed"
    metrics = stage["metrics"]
    resumed = metrics.get("resumed_from_step", 0)
    assert resumed >= SAVE and resumed % SAVE == 0, metrics
    assert metrics["global_step"] == STEPS
    # Every step after the checkpoint was trained again from its state: the same loss as without the kill.
    resumed_losses = _losses(summary)
    assert sorted(uninterrupted) == list(range(1, STEPS + 1)) and sorted(resumed_losses) == sorted(uninterrupted)
    for step in range(resumed + 1, STEPS + 1):
        assert resumed_losses[step] == pytest.approx(uninterrupted[step], rel=1e-4, abs=1e-5), step
    # Two workers split this machine's cores (at least one each) and run that many torch threads.
    assert metrics["torch_threads"] == max(1, len(os.sched_getaffinity(0)) // 2)
