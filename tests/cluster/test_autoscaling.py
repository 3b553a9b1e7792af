"""Autoscaling for real on this machine: Ray's fake multi-node provider (cluster/fake_multinode.yaml)
starts worker nodes as local raylets when a stage asks for them, and stops them when idle.

The head has no CPUs and no worker nodes at start: an SFT stage's 2 Train workers bring nodes up
(within the YAML's max_workers), the stage completes, and the idle nodes go after the run. A plan
above what max_workers allows fails at once with one line, before any worker starts.
"""

from __future__ import annotations

import json
import time

import pytest
import yaml

from fnsft.testing import REPO, start_pipeline, tiny_sft_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


def _run(tmp_path, cluster, num_workers: int, name: str, **sft):
    out = tmp_path / name
    cfg = tiny_sft_config(out, eval_split=0.0, **sft)
    cfg["resources"] = {"num_workers": num_workers, "cpus_per_worker": 1}
    cfg["ray"] = {"address": cluster.address}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    log = tmp_path / f"{name}.log"
    # The driver runs on the head's machine, where `ray up` leaves the autoscaler's YAML.
    env = {**cluster.env, "PYTHONPATH": REPO, "RAY_ADDRESS": "", "FNSFT_CLUSTER_YAML": cluster.config_path}
    return out, log, start_pipeline(path, log, env)


def test_a_stage_brings_nodes_up_and_they_go_when_idle(tmp_path, fake_autoscaler):
    limit = fake_autoscaler.config["max_workers"]
    assert fake_autoscaler.worker_nodes() == []  # nothing to train on yet
    out, log, proc = _run(tmp_path, fake_autoscaler, 2, "grow", max_steps=6, per_device_train_batch_size=4)
    seen: dict[str, float] = {}
    try:
        deadline = time.time() + 900
        while proc.poll() is None and time.time() < deadline:
            for node in fake_autoscaler.worker_nodes():
                seen[node["node_id"]] = node["cpus"]
            time.sleep(3)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert rc == 0, text[-6000:]
    summary = json.loads((out / "pipeline_summary.json").read_text())
    assert summary["stages"]["sft"]["status"] == "completed"
    assert seen, "no worker node came up"
    assert len(seen) <= limit and sum(seen.values()) >= 2, seen
    # idle_timeout_minutes: idle nodes are removed after the run.
    deadline = time.time() + 240
    while fake_autoscaler.worker_nodes() and time.time() < deadline:
        time.sleep(5)
    assert fake_autoscaler.worker_nodes() == [], "idle worker nodes were not removed"


def test_a_plan_above_max_workers_fails_at_once(tmp_path, fake_autoscaler):
    # max_workers 3: at most 4 CPUs of worker nodes; 5 one-CPU workers can never be placed.
    out, log, proc = _run(tmp_path, fake_autoscaler, 5, "never")
    started = time.time()
    rc = proc.wait(timeout=300)
    text = log.read_text()
    assert rc != 0, text[-4000:]
    lines = [ln for ln in text.splitlines() if "max_workers: 3" in ln]
    assert lines and "5 CPU" in lines[0] and "4 CPU" in lines[0], text[-4000:]
    assert time.time() - started < 120
    assert fake_autoscaler.worker_nodes() == []  # no node was launched, no worker started
    assert not (out / "01_sft" / ".worker0.node").exists()
