"""On a Ray this process started, a stage's Train job runs without Ray Train's cluster-only helper
actors (placement-group cleaner, preemption watcher, Ray Data's dataset manager, the autoscaling
coordinator its scaling policy starts); elsewhere Ray Train's defaults stay
(fnsft.distributed.train_runtime)."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.slow  # two Train jobs (~15 s)

HELPERS = {"PlacementGroupCleaner", "PreemptionWatcher", "DatasetManager"}


def _loop(config):
    pass


def _helpers_started_by_one_job(local: bool, tmp_path) -> set[str]:
    from ray._private import state
    from ray.train import RunConfig, ScalingConfig

    from fnsft.distributed.train_runtime import trainer_class

    before = set(state.actors())
    trainer_class(local)(_loop, scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
                         run_config=RunConfig(name=f"helpers-{local}", storage_path=str(tmp_path))).fit()
    names = {a["ActorClassName"].rsplit(".", 1)[-1] for k, a in state.actors().items() if k not in before}
    return names & HELPERS


def _coordinator():
    """Ray Data's detached autoscaling coordinator (Ray Train's scaling policy starts it), or None."""
    import ray

    try:
        return ray.get_actor("AutoscalingCoordinator", namespace="AutoscalingCoordinator")
    except ValueError:
        return None


def test_local_ray_leaves_out_train_cluster_helpers(ray_session, tmp_path, monkeypatch):
    import ray

    for key in ("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "RAY_TRAIN_METRICS_ENABLED"):
        monkeypatch.setenv(key, "1")  # recorded by monkeypatch, so what trainer_class sets is undone after
        monkeypatch.delenv(key)
    if _coordinator() is not None:  # left by an earlier test's job
        ray.kill(_coordinator())
    assert _helpers_started_by_one_job(True, tmp_path) == set()
    assert _coordinator() is None  # no autoscaler request on a local Ray
    assert os.environ["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] == "0"
    for key in ("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "RAY_TRAIN_METRICS_ENABLED"):
        monkeypatch.delenv(key)  # what the local job set stays for the process's later local jobs
    assert _helpers_started_by_one_job(False, tmp_path) == HELPERS  # what Ray Train starts by default
    assert _coordinator() is not None


def test_started_here_only_for_a_ray_this_process_started(ray_session):
    from fnsft.distributed.ray_runtime import started_here

    assert not started_here()  # the session's Ray was started by the test fixture, not ensure_ray


# A fresh process (the session's Ray was not started by ensure_ray): two 1-worker jobs on the
# local Ray ensure_ray starts; rank 0 writes what Ray Train propagated to it.
_CONTROLLER = r"""
import json, os, sys, time
from ray._private import state
from ray.train import RunConfig, ScalingConfig
from fnsft.config.schema import RayConfig
from fnsft.distributed.ray_runtime import ensure_ray, started_here
from fnsft.distributed.train_runtime import trainer_class

def loop(config):
    import os, ray.train
    with open(config["out"], "w") as f:
        json.dump({k: os.environ.get(k) for k in ("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "RAY_TRAIN_COLLECTIVE_TIMEOUT_S")}, f)

def idle_pids():  # processes this Ray (started below, so ours) started in advance, running nothing yet
    parent, idle = {}, set()
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{d}/stat") as f:
                parent[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{d}/cmdline", "rb") as f:
                if f.read().split(b"\0")[0] == b"ray::IDLE":
                    idle.add(int(d))
        except (OSError, IndexError, ValueError):
            pass
    def ours(pid):
        while pid > 1:
            pid = parent.get(pid, 0)
            if pid == os.getpid():
                return True
        return False
    return {pid for pid in idle if ours(pid)}

ensure_ray(RayConfig(), num_cpus=2)
for _ in range(200):
    if idle_pids():
        break
    time.sleep(0.1)
res = {}
for name in ("inherited", "changed"):
    if name == "changed":
        os.environ["RAY_TRAIN_COLLECTIVE_TIMEOUT_S"] = "123"  # set after ray.init: Ray's processes lack it
    idle, before = idle_pids(), set(state.actors())
    out = os.path.join(sys.argv[1], name + ".json")
    trainer_class(started_here())(loop, train_loop_config={"out": out},
        scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name=name, storage_path=sys.argv[1])).fit()
    ctl = [a for k, a in state.actors().items() if k not in before and a["ActorClassName"].endswith("TrainController")]
    res[name] = {"env": json.load(open(out)), "idle": len(idle), "controller_prestarted": ctl[0]["Pid"] in idle}
print("RESULT " + json.dumps(res))
"""


def test_local_controller_takes_a_prestarted_process_and_propagates_env(tmp_path):
    import json
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = root
    proc = subprocess.run([sys.executable, "-c", _CONTROLLER, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=600, cwd=str(tmp_path))
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert line, proc.stdout[-2000:] + proc.stderr[-3000:]
    res = json.loads(line[0][len("RESULT "):])
    # Nothing set since ray.init: the controller runs without a runtime environment, in a worker
    # process Ray started in advance, and still hands Ray Train's settings on to the workers.
    assert res["inherited"]["idle"] > 0 and res["inherited"]["controller_prestarted"]
    assert res["inherited"]["env"]["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "0.5"
    # A Train setting the driver set after ray.init: Ray Train's own start, which propagates it.
    assert res["changed"]["env"] == {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5", "RAY_TRAIN_COLLECTIVE_TIMEOUT_S": "123"}
