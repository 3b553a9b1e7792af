"""The placement arithmetic (no Ray): automatic CPU shares, local Ray size, what can never fit."""

from __future__ import annotations

import pytest

from fnsft.runtime import placement
from fnsft.runtime.placement import Capacity, Demand, auto_cpus_per_worker, local_capacity, problem


@pytest.fixture(autouse=True)
def _reset():
    yield
    placement.set_local_cores(None)
    placement.set_concurrent_runs(1)


def _cluster(*cpus, gpus=0):
    nodes = [{"CPU": float(c), **({"GPU": float(gpus)} if gpus else {})} for c in cpus]
    total = {"CPU": float(sum(cpus)), **({"GPU": float(gpus * len(cpus))} if gpus else {})}
    return Capacity(nodes=nodes, total=total, source="the cluster")


def test_a_lone_worker_gets_the_machine_and_several_split_it():
    placement.set_local_cores(8)
    cap = local_capacity(8)
    assert auto_cpus_per_worker(1, cap) == 8
    assert auto_cpus_per_worker(2, cap) == 4
    assert auto_cpus_per_worker(3, cap) == 2
    assert auto_cpus_per_worker(16, cap) == 1  # never below one CPU per worker


def test_role_actors_take_turns_with_the_learner_on_a_local_ray():
    # 2 cores, RL roles 1 + 0.25 + 0.5: the local Ray gets 2 + 1.75 -> 4 logical CPUs and the
    # lone learner still gets both cores.
    placement.set_local_cores(2)
    cpus = placement.local_ray_cpus(None, role_cpus=1.75)
    assert cpus == 4 if placement.machine_cores() == 2 else cpus >= 2
    cap = local_capacity(4)
    assert auto_cpus_per_worker(1, cap, role_cpus=1.75) == 2
    demand = Demand("stage rl", 1, {"CPU": 2.0}, roles=[{"CPU": 1.0}, {"CPU": 0.25}, {"CPU": 0.5}])
    assert problem(demand, cap) is None


def test_on_a_cluster_roles_come_out_of_the_share_and_concurrent_runs_split_it():
    cap = _cluster(8)
    assert auto_cpus_per_worker(1, cap) == 8
    assert auto_cpus_per_worker(1, cap, role_cpus=1.75) == 6
    placement.set_concurrent_runs(2)
    assert auto_cpus_per_worker(1, cap) == 4
    assert auto_cpus_per_worker(4, _cluster(8, 8)) == 2  # (16 / 2 runs) / 4 workers


def test_what_can_never_fit_is_named_with_both_sides():
    cap = _cluster(4, 4)
    too_many = Demand("stage sft", 64, {"CPU": 1.0})
    assert problem(too_many, cap) == ("stage sft asks for 64 Train worker(s) x {1 CPU} = {64 CPU} "
                                      "but the cluster has {8 CPU}")
    too_wide = Demand("stage sft", 1, {"CPU": 6.0})  # 6 <= 8 in total, but no node has 6
    assert "no node has {6 CPU}" in problem(too_wide, cap)
    gpus = Demand("stage sft", 2, {"CPU": 1.0, "GPU": 1.0})
    assert "{2 CPU, 2 GPU}" in problem(gpus, cap) and "the cluster has {8 CPU, 0 GPU}" in problem(gpus, cap)
    assert problem(Demand("stage sft", 2, {"CPU": 4.0}), cap) is None
    grows = _cluster(4)
    grows.may_grow = True  # an autoscaler of unknown reach: wait rather than refuse
    assert problem(too_many, grows) is None
