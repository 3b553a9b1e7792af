#!/usr/bin/env bash
# GPU smoke check of the precision policy (see scripts/gpu_check.py): SFT LoRA/full, DPO, GRPO, PPO
# on SmolLM2-135M-Instruct in bf16 (and GRPO on vLLM where vLLM is installed); JSON on stdout.
# Then tests/rl/test_rl_vllm.py. Under 10 minutes on one GPU.
#   bash scripts/gpu_check.sh [--out benchmarks/results/gpu_check.json]
#   bash scripts/gpu_check.sh --dry        # CPU, tiny model: what the test suite runs
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false
rc=0
python scripts/gpu_check.py "$@" || rc=$?
case " $* " in *" --dry "*) exit $rc ;; esac
# The vLLM generation engine (weight pushes checked against the engine after every push, GRPO
# and PPO learning on it, a LoRA push, a killed actor coming back current): vLLM in this environment
# (GPU) or its CPU build's venv; the tests skip, saying why, where neither exists (CI=1: a failure).
python -m pytest -q -p no:cacheprovider tests/rl/test_rl_vllm.py || rc=$?
exit $rc
