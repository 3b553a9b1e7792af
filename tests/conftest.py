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
                 runtime_env={"worker_process_setup_hook": "fnsft.runtime.ray_start.quiet_ray_internals"})
    yield ray
    ray.shutdown()


def pytest_collection_modifyitems(config, items):
    """Tests marked ``long`` run only with FNSFT_LONG_TESTS=1 (the CI suite stays near 45 min)."""
    if os.environ.get("FNSFT_LONG_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="marked long (a variant of a CI test, or minutes on SmolLM2); set FNSFT_LONG_TESTS=1")
    for item in items:
        if "long" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def fnsft_log(caplog):
    """``caplog`` that also sees the run logger: once a run has set up logging, ``fnsft`` no
    longer propagates to the root, so the capture handler is attached to it directly."""
    import logging

    logger = logging.getLogger("fnsft")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="fnsft"):
            yield caplog
    finally:
        logger.removeHandler(caplog.handler)


@pytest.fixture(scope="session")
def tiny_model_dir():
    from fnsft.models.builtin import materialize_builtin

    return materialize_builtin(TINY)


# ---- OpenAI-compatible endpoints (owner: api; fnsft/actors/api_client.py) -------------------
def _load_test_module(name: str):
    # tests/ is not a package and pytest runs with --import-mode=importlib: load by path.
    import importlib.util
    import sys

    full = f"fnsft_tests_{name}"
    if full not in sys.modules:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
        spec = importlib.util.spec_from_file_location(full, path)
        sys.modules[full] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[full])
    return sys.modules[full]


@pytest.fixture
def fake_openai():
    """A fresh local server in the OpenAI chat-completions format (tests/openai_fake.py):
    ``.base_url``, ``.answer = fn(body)``, ``.push("429", "500", "garbage", "slow", "401")``,
    ``.fault_for = fn(body)``, ``.requests``, ``.count``, ``.max_in_flight``."""
    server = _load_test_module("openai_fake").FakeOpenAI()
    yield server
    server.close()


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory):
    """A real OpenAI-compatible server on 127.0.0.1: vLLM (CPU build, its own venv from
    ``bash scripts/setup_test_tools.sh``) serving SmolLM2-135M-Instruct, started once per session
    (≈1 min on an idle 2-core machine, 6 min on a loaded one; ``FNSFT_VLLM_START_TIMEOUT``
    seconds at most, default 600). Yields ``.base_url`` and ``.model``.
    Without the venv: skipped locally, a failure under CI (``CI`` set)."""
    vllm = _load_test_module("vllm_local")
    if vllm.vllm_python() is None:
        msg = f"vLLM not installed in {vllm.vllm_venv()}: run bash scripts/setup_test_tools.sh"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    from fnsft.models.builtin import materialize_builtin

    model_dir = materialize_builtin("builtin:smollm2-135m-instruct")
    log = str(tmp_path_factory.mktemp("vllm") / "server.log")
    server = vllm.start_vllm_server(model_dir, log, float(os.environ.get("FNSFT_VLLM_START_TIMEOUT", 600)))
    print(f"vLLM server up in {server.start_s:.0f} s at {server.base_url} (log {log})")
    yield server
    server.stop()
