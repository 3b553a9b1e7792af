"""Per-step metric series of a stage, read from the history files its workers wrote.

SFT/DPO write ``log_history.json`` (HF ``Trainer.state.log_history``), the RL stage writes
``rl_history.json`` (one record per iteration) and ``rl_eval.json`` (held-out greedy evaluations).
Each metric becomes one small panel; counters and bookkeeping (``total_flos``, step counters,
throughput, runtimes) are left out because they either grow without bound or say nothing about
learning, and one of them on a shared axis flattens every other curve.
"""

from __future__ import annotations

import json
import os
from typing import Optional

from fnsft.utils.plots import keep_metric

__all__ = ["Series", "keep_metric", "order", "stage_series"]

Series = dict[str, list[tuple[float, float]]]

# The same choice of curves as the per-stage PNGs (fnsft.utils.plots): no counters, clocks, rates.
_FIRST = ("loss", "eval_loss", "reward", "reward_mean", "eval/reward", "eval/exact_match",
          "rewards/margins", "eval_rewards/margins", "rewards/accuracies", "eval_rewards/accuracies",
          "kl", "entropy", "response_length", "grad_norm")


def _read(path: str) -> Optional[list]:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, list) else None


def stage_series(stage_dir: str) -> Series:
    """All curves of one stage folder (``<output_dir>/<NN>_<stage>``); empty when none were written."""
    series: Series = {}
    for entry in _read(os.path.join(stage_dir, "log_history.json")) or []:
        step = entry.get("step")
        if step is None:
            continue
        for k, v in entry.items():
            if k.startswith("before_eval_"):  # the evaluation before training starts the eval_ curve
                k = k[len("before_"):]
            _add(series, k, step, v)
    for entry in _read(os.path.join(stage_dir, "rl_history.json")) or []:
        step = entry.get("iteration")
        for k, v in entry.items():
            if not k.startswith("eval/"):  # rl_eval.json holds the evaluations at their own iterations
                _add(series, k, step, v)
    for entry in _read(os.path.join(stage_dir, "rl_eval.json")) or []:
        step = entry.get("iteration")
        for k, v in entry.items():
            if k != "iteration":
                _add(series, k if k.startswith("eval") else f"eval/{k}", step, v)
    for k in series:
        series[k].sort()
    return order(series)


def _add(series: Series, key: str, step, value) -> None:
    if step is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not keep_metric(key):
        return
    if value != value or value in (float("inf"), float("-inf")):  # NaN/inf: no point to draw
        return
    points = series.setdefault(key, [])
    if points and points[-1][0] == step and points[-1][1] == value:
        return
    points.append((float(step), float(value)))


def order(series: Series) -> Series:
    """Known headline metrics first (in ``_FIRST`` order), then the rest alphabetically."""
    known = [k for k in _FIRST if k in series]
    rest = sorted(k for k in series if k not in known)
    return {k: series[k] for k in known + rest if series[k]}
