"""One training stage spread over a two-node Ray cluster (``ray.cluster_utils.Cluster``).

The cluster runs in its own subprocess, temp dir and environment, so it cannot meet the test
session's in-process Ray. Each Train worker records the node it ran on (``.worker<rank>.node``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from fnsft.testing import REPO

SCRIPT = r"""
import json, sys

import ray
import ray._private.services as services
from ray.cluster_utils import Cluster

from fnsft.pipeline import Pipeline
from fnsft.testing import tiny_sft_config

out = sys.argv[1]
node = {"num_cpus": 1, "node_ip_address": "127.0.0.1"}
cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
cluster.add_node(**node)
cluster.wait_for_nodes()
try:
    # The nodes listen on 127.0.0.1 only; a driver would swap 127.0.0.1 for the machine's IP
    # before connecting, so keep the address as given.
    services.resolve_ip_for_localhost = lambda host: host
    ray.init(address=cluster.address, _node_ip_address="127.0.0.1", namespace="fnsft")  # the pipeline joins it
    cfg = tiny_sft_config(out, num_train_epochs=1)  # 2 workers, ZeRO-2
    cfg["resources"]["placement_strategy"] = "STRICT_SPREAD"  # one worker per node
    summary = Pipeline.from_dict(cfg).run()
    nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
    print("RESULT " + json.dumps({"nodes": nodes, "sft": summary["stages"]["sft"]["status"]}), flush=True)
finally:
    ray.shutdown()
    cluster.shutdown()
"""


@pytest.mark.slow
def test_one_stage_runs_its_workers_on_both_nodes(tmp_path):
    out = tmp_path / "run"
    temp_dir = tempfile.mkdtemp(prefix="fn2", dir="/tmp")  # short: Ray's sockets live in it
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)}
    env.update(RAY_TMPDIR=temp_dir, RAY_AUTH_MODE="disabled", TOKENIZERS_PARALLELISM="false",
               RAY_USAGE_STATS_ENABLED="0")
    try:
        r = subprocess.run([sys.executable, "-c", SCRIPT, str(out)], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=600)
    finally:
        time.sleep(2)
        leftovers = subprocess.run(["pgrep", "-f", temp_dir], capture_output=True, text=True).stdout.split()
        for pid in leftovers:  # processes of the cluster this test started
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    assert not leftovers, f"processes of the test cluster still running: {leftovers}"
    result = json.loads(next(ln for ln in r.stdout.splitlines() if ln.startswith("RESULT "))[len("RESULT "):])
    assert result["sft"] == "completed"
    assert len(result["nodes"]) == 2

    stage_dir = out / "01_sft"
    ran_on = {rank: (stage_dir / f".worker{rank}.node").read_text().strip() for rank in (0, 1)}
    assert set(ran_on.values()) == set(result["nodes"])  # rank 0 and rank 1 on different nodes
    assert (stage_dir / "model" / "config.json").is_file()
