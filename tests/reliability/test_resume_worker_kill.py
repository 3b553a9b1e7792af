"""SIGKILL one of two Train workers under DeepSpeed ZeRO-2 (no mocks): Ray restarts the worker
group from the newest registered checkpoint and the stage completes.

Every rank reads that checkpoint in place (fnsft.distributed.resume): none deletes or copies
into a folder another rank reads, so the restore cannot race.
"""

from __future__ import annotations

import os

import pytest

from fnsft.pipeline import Pipeline
from fnsft.testing import KillAfterCheckpoint, tiny_sft_config

pytestmark = pytest.mark.slow


def test_killed_zero2_worker_resumes_from_checkpoint(tmp_path, ray_session):
    cfg = tiny_sft_config(tmp_path / "out", max_steps=60, save_steps=10, eval_split=0.0,
                          per_device_train_batch_size=4, learning_rate=1e-3)
    cfg["deepspeed"] = {"zero_stage": 2}
    cfg["resources"] = {"num_workers": 2, "max_failures": 1}
    with KillAfterCheckpoint(tmp_path / "out", "01_sft", "sft", rank=1) as killer:
        summary = Pipeline.from_dict(cfg).run()
    assert killer.pid, "the worker was never killed (training ended before the first checkpoint?)"
    stage = summary["stages"]["sft"]
    assert stage["status"] == "completed"
    metrics = stage["metrics"]
    assert metrics.get("resumed_from_step", 0) >= 10 and metrics["resumed_from_step"] % 10 == 0, metrics
    assert metrics["global_step"] == 60
    # Two workers split this machine's cores (at least one each) and run that many torch threads.
    assert metrics["torch_threads"] == max(1, len(os.sched_getaffinity(0)) // 2)
