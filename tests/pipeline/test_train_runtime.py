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
