#!/usr/bin/env bash
# GPU smoke check of the precision policy (see scripts/gpu_check.py): SFT LoRA/full, DPO, GRPO, PPO
# on SmolLM2-135M-Instruct in bf16; JSON on stdout. Under 8 minutes on one GPU.
#   bash scripts/gpu_check.sh [--out benchmarks/results/gpu_check.json]
#   bash scripts/gpu_check.sh --dry        # CPU, tiny model: what the test suite runs
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false
exec python scripts/gpu_check.py "$@"
