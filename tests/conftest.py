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


# ---- OpenAI-compatible endpoints (owner: api; fnsft/actors/api_client.py) -------------------
def _load_openai_fake():
    # tests/ is not a package and pytest runs with --import-mode=importlib: load by path.
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "openai_fake.py")
    spec = importlib.util.spec_from_file_location("fnsft_tests_openai_fake", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fake_openai():
    """A fresh local server in the OpenAI chat-completions format (tests/openai_fake.py):
    ``.base_url``, ``.answer = fn(body)``, ``.push("429", "500", "garbage", "slow", "401")``,
    ``.fault_for = fn(body)``, ``.requests``, ``.count``, ``.max_in_flight``."""
    server = _load_openai_fake().FakeOpenAI()
    yield server
    server.close()
