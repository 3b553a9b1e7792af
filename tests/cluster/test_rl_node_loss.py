"""Node loss in an RL stage on a simulated cluster (a 0-CPU head, two 1-CPU worker nodes).

The one Train worker takes one node and the generation actor (its placement-group bundle, 1
CPU) the other, so the node each test loses holds a known part of the stage:

- the Train worker's node: Ray Train restarts the worker group on a fresh node from the newest
  checkpoint; the loop continues after it (no iteration before it redone) and pushes the
  restored weights to the generation actor, which lived on;
- the generation actor's node: Ray reschedules the bundle and restarts the actor on a fresh
  node; the loop re-sends the policy's current weights before it samples again
  (``verify_weight_sync``: every push's checksum equals the trainer's), and the stage completes
  with every iteration run once.
"""

from __future__ import annotations

import json
import os

import pytest

from fnsft.testing import EXAMPLES, TINY

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

ITERATIONS, SAVE = 24, 4


def _config(out, sim_cluster) -> dict:
    stage = {
        "dataset_name_or_path": os.path.join(EXAMPLES, "arithmetic", "train.jsonl"), "algorithm": "grpo",
        "num_iterations": ITERATIONS, "save_steps": SAVE, "prompts_per_iteration": 4, "num_generations": 4,
        "max_new_tokens": 8, "learning_rate": 3e-3, "kl_coef": 0.0, "save_intermediate": False,
        "rewards": [{"type": "target_chars", "chars": "the"}], "report_to": ["none"], "verify_weight_sync": True,
        # generation fills one worker node (its bundle); the reward function needs no CPU of its own
        "generation": {"num_replicas": 1, "num_cpus": 1}, "reward": {"num_cpus": 0},
    }
    return {"model_name_or_path": TINY, "output_dir": str(out), "stages": ["rl"],
            "resources": {"num_workers": 1, "cpus_per_worker": 1, "max_failures": 2},
            "deepspeed": {"zero_stage": 2, "on_single_worker": True},
            "ray": {"address": sim_cluster.address}, "stage_configs": {"rl": stage}}


def _run_losing(tmp_path, sim_cluster, lose_worker_node: bool):
    """Run the stage; after its first checkpoint, lose the worker's (or the other) node and add
    a fresh one. Returns (the lost node id, the worker's node then, the summary, the driver log)."""
    out = tmp_path / "out"
    seen = {}

    def pick(stage_dir):
        seen["worker"] = worker = sim_cluster.node_of(stage_dir, 0)
        if not worker:
            return None
        others = [n.node_id for n in sim_cluster.cluster.worker_nodes if n.node_id != worker]
        assert len(others) == 1, others
        return worker if lose_worker_node else others[0]

    lost, text = sim_cluster.run_losing_a_node(_config(out, sim_cluster), tmp_path, "rl", pick)
    return lost, seen["worker"], json.loads((out / "pipeline_summary.json").read_text()), text


def _history(summary) -> list[dict]:
    with open(summary["stages"]["rl"]["artifacts"]["rl_history"]) as f:
        return json.load(f)


def test_rl_survives_losing_the_train_workers_node(tmp_path, sim_cluster):
    lost, worker, summary, log = _run_losing(tmp_path, sim_cluster, lose_worker_node=True)
    rl = summary["stages"]["rl"]
    metrics = rl["metrics"]
    assert rl["status"] == "completed"
    resumed = metrics.get("resumed_from_iteration", 0)
    assert resumed >= SAVE and resumed % SAVE == 0, metrics
    # Every iteration exactly once: none before the checkpoint redone, none after it skipped.
    assert [h["iteration"] for h in _history(summary)] == list(range(1, ITERATIONS + 1))
    assert metrics["weight_sync_mismatches"] == 0
    placement = metrics["placement"]
    assert [w["rank"] for w in placement["workers"]] == [0]
    assert placement["workers"][0]["node_id"] != lost  # restarted on the fresh node
    assert placement["roles"]["generation"][0]["node_id"] not in (lost, placement["workers"][0]["node_id"])
    assert f"resumed from the checkpoint at iteration {resumed}" in log


def test_rl_survives_losing_the_generation_actors_node(tmp_path, sim_cluster):
    lost, worker, summary, log = _run_losing(tmp_path, sim_cluster, lose_worker_node=False)
    rl = summary["stages"]["rl"]
    metrics = rl["metrics"]
    assert rl["status"] == "completed"
    assert "resumed_from_iteration" not in metrics  # the Train worker lived on: no restart
    assert [h["iteration"] for h in _history(summary)] == list(range(1, ITERATIONS + 1))
    # Ray restarted the actor on the fresh node; every push and resync since matched the trainer.
    placement = metrics["placement"]
    gen_node = placement["roles"]["generation"][0]["node_id"]
    assert gen_node not in (lost, worker), placement
    assert placement["workers"][0]["node_id"] == worker
    assert metrics["weight_sync_mismatches"] == 0
    # The restarted actor got the current weights before it served: by a resync after its
    # refusal or failed call, or by the push that reached it first (then no resync was needed).
    assert metrics.get("weight_resyncs", 0) >= metrics.get("role_recoveries", 0)
