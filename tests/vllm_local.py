"""Start and stop a real OpenAI-compatible server on 127.0.0.1: vLLM's CPU build serving SmolLM2.

vLLM lives in its own virtualenv (``bash scripts/setup_test_tools.sh``; it pins a torch and a
transformers that clash with the main env). Used by the ``vllm_server`` fixture
(tests/conftest.py) and by ``benchmarks/api_concurrency.py``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from typing import Optional

MODEL_NAME = "smollm2-135m-instruct"


def vllm_venv() -> str:
    return os.environ.get("FNSFT_VLLM_VENV") or os.path.expanduser("~/.cache/fnsft/vllm-venv")


def vllm_python() -> Optional[str]:
    """The venv's python when vLLM is installed there, else None."""
    py = os.path.join(vllm_venv(), "bin", "python")
    if not os.path.isfile(py):
        return None
    ok = subprocess.run([py, "-c", "import importlib.util as u, sys; sys.exit(u.find_spec('vllm') is None)"],
                        capture_output=True)
    return py if ok.returncode == 0 else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class VllmServer:
    base_url: str
    model: str
    proc: subprocess.Popen
    log_path: str
    start_s: float

    def log_tail(self, n: int = 40) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        """The whole process group: vLLM starts engine-core child processes."""
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        except ProcessLookupError:
            pass


def start_vllm_server(model_dir: str, log_path: str, timeout_s: float = 300.0,
                      python: Optional[str] = None) -> VllmServer:
    """Serve ``model_dir`` as ``smollm2-135m-instruct`` on a free 127.0.0.1 port; wait for /v1/models."""
    py = python or vllm_python()
    if py is None:
        raise RuntimeError(f"no vLLM in {vllm_venv()}: run bash scripts/setup_test_tools.sh")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OPENAI_API_KEY")}
    env.update({
        # Measured here (../shared/FACTS.md): 2 cores, 1 GiB KV cache; eager start-up ≈55 s.
        "VLLM_CPU_OMP_THREADS_BIND": os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "0-1"),
        "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
        "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1",
    })
    cmd = [py, "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir,
           "--served-model-name", MODEL_NAME, "--host", "127.0.0.1", "--port", str(port),
           "--enforce-eager", "--max-model-len", "2048", "--max-logprobs", "20"]
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    server = VllmServer(f"http://127.0.0.1:{port}/v1", MODEL_NAME, proc, log_path, 0.0)
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"vLLM exited with {proc.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.base_url}/models", timeout=5) as r:
                if any(m["id"] == MODEL_NAME for m in json.load(r)["data"]):
                    break
        except (OSError, ValueError, KeyError):
            pass
        if time.monotonic() - t0 > timeout_s:
            server.stop()
            raise RuntimeError(f"vLLM did not answer /v1/models within {timeout_s:.0f} s:\n{server.log_tail()}")
        time.sleep(2)
    server.start_s = time.monotonic() - t0
    return server
