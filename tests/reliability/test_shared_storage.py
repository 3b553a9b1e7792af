"""Runs sharing one ``ray.storage_path`` never delete each other's checkpoints: a finished stage
removes its own Train run folder (known by name) and leaves a concurrent run's, even one that
appeared while the stage ran (real SFT on local Ray)."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from fnsft.pipeline import Pipeline
from fnsft.testing import tiny_sft_config


@pytest.mark.slow
def test_a_stage_removes_only_its_own_train_run_from_a_shared_storage_path(tmp_path, ray_session):
    shared = tmp_path / "shared_storage"
    out = tmp_path / "run"
    cfg = tiny_sft_config(out, num_train_epochs=1, save_steps=2)
    cfg["resources"] = {"num_workers": 1}
    cfg["ray"] = {"storage_path": str(shared)}
    cfg["report"] = {"enabled": False}
    # Another run on the same storage path, its checkpoint live, started after this one's
    # stage began (as a Tune trial beside this one would).
    other = shared / "sft-0123456789ab"
    summary, done = out / "pipeline_summary.json", threading.Event()

    def other_run_starts() -> None:
        while not done.is_set():
            try:
                if json.loads(summary.read_text())["stages"]["sft"]["status"] == "running":
                    (other / "checkpoint-000002").mkdir(parents=True)
                    (other / "checkpoint-000002" / "model.safetensors").write_bytes(b"x" * 100)
                    return
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)

    watcher = threading.Thread(target=other_run_starts)
    watcher.start()
    try:
        result = Pipeline.from_dict(cfg).run()
    finally:
        done.set()
        watcher.join()
    assert os.path.isfile(other / "checkpoint-000002" / "model.safetensors")  # the other run's: kept
    assert sorted(os.listdir(shared)) == [other.name]  # this run's own Train run: removed
    assert result["stages"]["sft"]["checkpoint_bytes_removed"] > 0
