"""A DPO stage loses a worker node mid-stage on the simulated cluster (a 0-CPU head, two 1-CPU
worker nodes) and resumes from its newest checkpoint on the remaining and a fresh node.

The same path as SFT (tests/cluster/test_node_loss.py) through TRL's DPO trainer: the restarted
workers read the checkpoint Ray Train registered, so no step before it is redone; the summary's
``placement`` shows the lost node no longer holds a worker.
"""

from __future__ import annotations

import json
import os

import pytest

from fnsft.testing import EXAMPLES, TINY

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

STEPS, SAVE = 24, 6


def test_dpo_survives_a_lost_worker_node(tmp_path, sim_cluster):
    out = tmp_path / "out"
    stage = {"preference_dataset_path": os.path.join(EXAMPLES, "preferences.jsonl"), "learning_rate": 5e-3,
             "max_steps": STEPS, "save_steps": SAVE, "per_device_train_batch_size": 2, "max_length": 96,
             "max_prompt_length": 64, "report_to": ["none"], "eval_split": 0.0}
    cfg = {"model_name_or_path": TINY, "output_dir": str(out), "stages": ["dpo"],
           "resources": {"num_workers": 2, "cpus_per_worker": 1, "placement_strategy": "SPREAD", "max_failures": 2},
           "deepspeed": {"zero_stage": 2}, "ray": {"address": sim_cluster.address}, "stage_configs": {"dpo": stage}}

    lost, text = sim_cluster.run_losing_a_node(cfg, tmp_path, "dpo", sim_cluster.second_worker_node, finish_s=1200)
    assert "ActorDiedError" not in text
    dpo = json.loads((out / "pipeline_summary.json").read_text())["stages"]["dpo"]
    metrics = dpo["metrics"]
    assert dpo["status"] == "completed"
    assert metrics["global_step"] == STEPS
    assert metrics.get("resumed_from_step", 0) >= SAVE and metrics["resumed_from_step"] % SAVE == 0, metrics
    workers = metrics["placement"]["workers"]
    assert [w["rank"] for w in workers] == [0, 1]
    assert lost not in {w["node_id"] for w in workers}  # the restarted group ran on the nodes left
    assert len({w["node_id"] for w in workers}) == 2  # SPREAD still holds across the new nodes
