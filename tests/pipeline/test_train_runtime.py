"""A stage's Train job is Ray Train's stock ``TorchTrainer``; on a Ray that ``ensure_ray`` started,
Ray Train's public switches (fnsft.runtime.ray_start.LOCAL_TRAIN_ENV) leave out its preemption
watcher, and the settings the driver holds reach the workers."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.slow  # a fresh process with its own Ray and two Train jobs


def test_started_here_only_for_a_ray_this_process_started(ray_session):
    from fnsft.runtime.ray_start import started_here

    assert not started_here()  # the session's Ray was started by the test fixture, not ensure_ray


# A fresh process (the session's Ray was not started by ensure_ray): two 1-worker jobs on the
# local Ray ensure_ray starts; rank 0 writes what Ray Train propagated to it.
_JOBS = r"""
import json, os, sys
from ray._private import state
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from fnsft.config.schema import RayConfig
from fnsft.runtime.ray_start import ensure_ray, started_here

def loop(config):
    import os
    with open(config["out"], "w") as f:
        json.dump({k: os.environ.get(k) for k in ("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "RAY_TRAIN_COLLECTIVE_TIMEOUT_S")}, f)

ensure_ray(RayConfig(), num_cpus=2)
res = {"started_here": started_here()}
for name in ("inherited", "changed"):
    if name == "changed":
        os.environ["RAY_TRAIN_COLLECTIVE_TIMEOUT_S"] = "123"  # set after ray.init: Ray's processes lack it
    before = set(state.actors())
    out = os.path.join(sys.argv[1], name + ".json")
    TorchTrainer(loop, train_loop_config={"out": out},
                 scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
                 run_config=RunConfig(name=name, storage_path=sys.argv[1])).fit()
    started = sorted({a["ActorClassName"].rsplit(".", 1)[-1] for k, a in state.actors().items() if k not in before})
    res[name] = {"env": json.load(open(out)), "actors": started}
print("RESULT " + json.dumps(res))
"""


def test_local_train_jobs_get_the_settings_and_no_preemption_watcher(tmp_path):
    import json
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "RAY_TRAIN_METRICS_ENABLED",
                        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "RAY_TRAIN_COLLECTIVE_TIMEOUT_S")}
    env["PYTHONPATH"] = root
    proc = subprocess.run([sys.executable, "-c", _JOBS, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=600, cwd=str(tmp_path))
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert line, proc.stdout[-2000:] + proc.stderr[-3000:]
    res = json.loads(line[0][len("RESULT "):])
    assert res["started_here"]
    for name in ("inherited", "changed"):
        assert "TrainController" in res[name]["actors"]  # the reader sees the job's actors
        assert "PreemptionWatcher" not in res[name]["actors"], res[name]["actors"]
    assert res["inherited"]["env"]["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "0.5"
    # A Train setting the driver set after ray.init: Ray Train propagates it to the workers.
    assert res["changed"]["env"] == {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5", "RAY_TRAIN_COLLECTIVE_TIMEOUT_S": "123"}
