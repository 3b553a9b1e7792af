"""A simulated multi-node Ray cluster on this machine (slow tests).

``ray.cluster_utils.Cluster`` starts a head (no CPUs: nothing but the driver's bookkeeping can
land there, as on a real cluster whose head is kept free) and worker nodes, each its own raylet
with its own object store, so a node can be lost (``remove_node``) while the run goes on. Its
processes inherit the environment of the moment a node is added, as a real node's raylet does;
``node_env`` sets what a node sees (e.g. an S3 endpoint). Everything binds to this machine and the
cluster lives in its own temp dir; it never touches another Ray here (no ``ray stop``).
"""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest


def _sim():
    name = "fnsft_tests_cluster_sim"
    if name not in sys.modules:  # tests/ is not a package (--import-mode=importlib): load by path
        spec = importlib.util.spec_from_file_location(name, os.path.join(os.path.dirname(__file__), "sim.py"))
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


@pytest.fixture
def sim_cluster_env():
    """``make(env)``: a cluster (0-CPU head, two 1-CPU workers) whose nodes see ``env``."""
    made = []

    def make(env: dict | None = None):
        cluster = _sim().SimCluster(env=env)
        made.append(cluster)
        cluster.add_worker()
        cluster.add_worker()
        return cluster

    try:
        yield make
    finally:
        for cluster in made:
            cluster.shutdown()


@pytest.fixture
def sim_cluster(sim_cluster_env):
    """A head with no CPUs and two 1-CPU worker nodes."""
    return sim_cluster_env()


@pytest.fixture
def s3(tmp_path):
    """``moto_server`` on 127.0.0.1: ``.env`` (endpoint + credentials for the nodes), ``.keys(bucket)``."""
    server = _sim().LocalS3(str(tmp_path / "moto.log"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def s3_cluster(s3, sim_cluster_env):
    """The simulated cluster whose nodes (only they) reach ``s3``."""
    return sim_cluster_env(s3.env)


@pytest.fixture
def fake_autoscaler(tmp_path):
    """A head running Ray's autoscaler with cluster/fake_multinode.yaml and no worker nodes:
    ``.address``, ``.env`` (what a driver needs), ``.config_path``, ``.worker_nodes()``.
    Teardown stops the head and every node it launched (by its own temp dir), and fails if
    anything of it is left running."""
    from fnsft.testing import REPO

    cluster = _sim().FakeAutoscalingCluster(os.path.join(REPO, "cluster", "fake_multinode.yaml"), str(tmp_path))
    try:
        yield cluster
    finally:
        cluster.close()
        assert not cluster.still_running(), "processes of the fake autoscaling cluster left running"
