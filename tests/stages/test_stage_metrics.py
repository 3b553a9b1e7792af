"""What a training stage reports about speed and memory, and how ZeRO-3 builds the model.

One 2-worker ZeRO-3 SFT -> DPO run on the tiny model: the summary carries useful (non-padding)
tokens/s and the peak RSS of the driver and of each worker, and every rank built the model
already partitioned (DeepSpeed's ``ds_id`` on every parameter, no parameter held in full), so
no rank made a full host copy before partitioning: SFT from the model's folder, DPO (policy and
frozen reference) from SFT's weights in the object store.
"""

from __future__ import annotations

import json
import os

import pytest

from fnsft.pipeline import Pipeline
from fnsft.testing import EXAMPLES, tiny_sft_config


@pytest.mark.slow
def test_zero3_builds_partitioned_and_reports_tokens_and_memory(tmp_path, ray_session):
    cfg = tiny_sft_config(tmp_path / "out", max_steps=3, eval_split=0, num_train_epochs=1)
    cfg["deepspeed"] = {"zero_stage": 3}
    cfg["stages"] = ["sft", "dpo"]
    cfg["stage_configs"]["dpo"] = {"preference_dataset_path": os.path.join(EXAMPLES, "preferences.jsonl"),
                                   "max_steps": 2, "per_device_train_batch_size": 4, "max_length": 96,
                                   "eval_split": 0, "save_steps": 0, "report_to": ["none"]}
    summary = Pipeline.from_dict(cfg).run()
    m = summary["stages"]["sft"]["metrics"]
    assert m["zero3_partitioned_at_load"] is True
    assert m["params_materialized_at_load"] == 0  # without zero.Init: the tiny model's ~116k on every rank
    assert m["useful_tokens"] > 3 * 8 * 10 and m["useful_tokens_per_second"] > 0
    assert len(m["worker_peak_rss_mb"]) == 2 and min(m["worker_peak_rss_mb"]) > 50
    assert m["worker_peak_rss_mb_max"] == max(m["worker_peak_rss_mb"]) and m["driver_peak_rss_mb"] > 50
    assert "length-grouped" in m["batching"]
    assert m["lm_head_positions"] == "labelled"  # TRL's fused LM head skips prompt and padding on CPU too
    on_disk = json.load(open(os.path.join(cfg["output_dir"], "pipeline_summary.json")))
    assert on_disk["stages"]["sft"]["metrics"]["useful_tokens_per_second"] == m["useful_tokens_per_second"]
    log = open(os.path.join(cfg["output_dir"], "pipeline_training.log")).read()
    assert "[sft] " in log and "useful (non-padding) tokens/s" in log and "peak RSS: driver" in log
    d = summary["stages"]["dpo"]["metrics"]
    assert d["zero3_partitioned_at_load"] is True and d["params_materialized_at_load"] == 0
    assert d["useful_tokens_per_second"] > 0 and len(d["worker_peak_rss_mb"]) == 2
