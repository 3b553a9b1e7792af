"""Shared fixtures: one local Ray per test session, the tiny offline model, small configs.

Ray starts once (≈15 s) and every pipeline test reuses it: ``Pipeline.run`` joins an initialized
Ray instead of starting its own. Everything listens on 127.0.0.1.
"""

from __future__ import annotations

import os
import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_DEDUP_LOGS", "1")
from fnsft.testing import TINY  # noqa: E402


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray shared by the whole session (4 logical CPUs: 2 Train workers + actors)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=4, include_dashboard=False, _node_ip_address="127.0.0.1",
                 namespace="fnsft", log_to_driver=True,
                 runtime_env={"worker_process_setup_hook": "fnsft.distributed.ray_runtime.quiet_ray_internals"})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_model_dir():
    from fnsft.models.builtin import materialize_builtin

    return materialize_builtin(TINY)
