"""A worker node lost mid-stage on a simulated 3-node cluster: the stage resumes from its newest
checkpoint on the remaining and a fresh node, and completes.

Before the hand-off store was pinned to the driver's node, it could be placed on a worker node;
losing that node failed the whole run (`ActorDiedError ... HandoffStore ... its node has died`)
when the restarted workers asked the store for the run's recorded failure.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

from fnsft.testing import tiny_sft_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def test_stage_survives_a_lost_worker_node(tmp_path, sim_cluster):
    out = tmp_path / "out"
    cfg = tiny_sft_config(out, max_steps=40, save_steps=10, eval_split=0.0, per_device_train_batch_size=4,
                          learning_rate=1e-3)
    cfg["resources"] = {"num_workers": 2, "cpus_per_worker": 1, "placement_strategy": "SPREAD", "max_failures": 2}
    cfg["ray"] = {"address": sim_cluster.address}

    lost, text = sim_cluster.run_losing_a_node(cfg, tmp_path, "sft", sim_cluster.second_worker_node,
                                               timeout_s=600, finish_s=900)
    stage_dir = os.path.join(out, "01_sft")
    assert "ActorDiedError" not in text
    summary = json.loads((out / "pipeline_summary.json").read_text())
    metrics = summary["stages"]["sft"]["metrics"]
    assert summary["stages"]["sft"]["status"] == "completed"
    assert metrics["global_step"] == 40
    assert metrics.get("resumed_from_step", 0) >= 10 and metrics["resumed_from_step"] % 10 == 0, metrics
    # The restarted worker group ran on the nodes that were left: the lost one is gone.
    assert lost not in {sim_cluster.node_of(stage_dir, 0), sim_cluster.node_of(stage_dir, 1)}
    assert sys.executable  # the driver ran as its own process, as `fnsft-pipeline` does
