"""A plan that can never fit an autoscaling cluster (its node types x max_workers) is refused at
once; the autoscaler's limits are read from the sources fnsft.compat.ray_autoscaler names (fast)."""

from __future__ import annotations

import os

import pytest
import ray
import yaml

from fnsft.compat import ray_autoscaler
from fnsft.compat.ray_autoscaler import AutoscalerLimits, NodeType, limits_from_cluster_yaml
from fnsft.runtime.placement import Demand, grown_capacity, problem
from fnsft.testing import REPO

FAKE = os.path.join(REPO, "cluster", "fake_multinode.yaml")


def _fake_limits():
    with open(FAKE) as f:
        return limits_from_cluster_yaml(yaml.safe_load(f), FAKE)


def test_the_fake_cluster_yaml_gives_its_worker_types_and_max_workers():
    limits = _fake_limits()
    assert limits.max_workers == 3
    assert {t.name: (t.resources, t.max_workers) for t in limits.node_types} == {
        "cpu.1x": ({"CPU": 1.0}, 2), "cpu.2x": ({"CPU": 2.0}, 1)}


def test_an_empty_autoscaling_cluster_counts_what_it_can_add():
    head = {"CPU": 0.0, "node:__internal_head__": 1.0}
    cap = grown_capacity([head], {"CPU": 0.0}, head, _fake_limits())
    # max_workers 3: one 2-CPU node and two 1-CPU nodes at most.
    assert cap.total["CPU"] == 4.0 and not cap.may_grow
    assert problem(Demand("stage sft", 2, {"CPU": 1.0}), cap) is None
    assert problem(Demand("stage sft", 4, {"CPU": 1.0}), cap) is None


def test_a_plan_above_max_workers_is_one_line_naming_the_limit():
    head = {"CPU": 0.0, "node:__internal_head__": 1.0}
    cap = grown_capacity([head], {"CPU": 0.0}, head, _fake_limits())
    why = problem(Demand("stage sft", 5, {"CPU": 1.0}), cap)
    assert why and "\n" not in why
    assert "max_workers: 3" in why and "5 CPU" in why and "4 CPU" in why, why
    # A bundle larger than any node type can never be placed either.
    why = problem(Demand("stage sft", 1, {"CPU": 3.0}), cap)
    assert why and "no node has {3 CPU}" in why, why


def test_the_cluster_wide_cap_binds_before_the_per_type_ones():
    limits = AutoscalerLimits((NodeType("big", {"CPU": 8.0}, 4), NodeType("small", {"CPU": 1.0}, 10)), 2, "x")
    cap = grown_capacity([{}], {}, {}, limits)
    assert cap.total["CPU"] == 16.0  # two big nodes, not 4 x 8 + 10 x 1


def test_live_nodes_beyond_the_bound_are_still_counted():
    limits = AutoscalerLimits((NodeType("small", {"CPU": 1.0}, 1),), 1, "x")
    cap = grown_capacity([{"CPU": 4.0}, {"CPU": 4.0}], {"CPU": 8.0}, {"CPU": 4.0}, limits)
    assert cap.total["CPU"] == 8.0


def test_the_private_ray_calls_compat_relies_on_are_still_there():
    """Fails loudly when a Ray upgrade moves them (then update fnsft/compat/ray_autoscaler.py)."""
    from ray._private.state import state
    from ray.experimental.internal_kv import _internal_kv_get

    assert callable(state.get_cluster_config) and callable(_internal_kv_get)
    major, minor = (int(x) for x in ray.__version__.split(".")[:2])
    assert (2, 40) <= (major, minor) <= (2, 60), (
        f"ray {ray.__version__} is outside {ray_autoscaler.RAY_VERSIONS}: check the autoscaler calls")


def test_no_autoscaler_reads_as_no_limits(monkeypatch, tmp_path):
    """Without an autoscaler — outside Ray, or in the suite's local Ray (no cluster config in the
    GCS, a read-only autoscaler whose node types are ``node_<id>``) — there are no limits,
    whatever cluster YAML lies around."""
    path = tmp_path / "cluster.yaml"
    path.write_text(open(FAKE).read())
    monkeypatch.setenv("FNSFT_CLUSTER_YAML", str(path))
    assert ray_autoscaler.autoscaler_limits() is None
