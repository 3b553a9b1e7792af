"""What the driver does with a stage's return value and its metrics: the guide's ``StageResult``
contract checked, values made JSON/YAML-safe, the one-line metric headline of the log."""

from __future__ import annotations

import logging
from typing import Any

from fnsft.errors import StageError
from fnsft.stages.base import StageResult

log = logging.getLogger("fnsft")


def checked_result(result: Any, name: str, handle, tokenizer) -> StageResult:
    """A stage's return value as a StageResult (the guide's contract), or a StageError."""
    if result is None:
        log.warning("Stage %s: execute() returned None; handing its input model on unchanged "
                    "(return a StageResult to hand on a model or metrics)", name)
        result = StageResult(model=None, tokenizer=tokenizer)
    if not isinstance(result, StageResult):
        raise StageError(f"stage {name}: execute() returned {type(result).__name__}; return a StageResult "
                         "(model=None hands the input on)")
    if not result.success:
        why = result.message or result.metrics.get("error") or "no message given"
        raise StageError(f"stage {name} failed: {why}")
    result.stage_name = name
    return result


def plain(obj: Any) -> Any:
    """JSON/YAML-safe copy (numbers, strings, lists, dicts)."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    try:
        return float(obj)
    except (TypeError, ValueError):
        return str(obj)


_HEADLINE = ("train_loss", "before_eval_loss", "eval_loss", "eval_perplexity", "before_eval_rewards/accuracies",
             "eval_rewards/accuracies", "eval_rewards/margins", "reward_start", "reward_end", "global_step",
             "train_seconds")


def short_metrics(metrics: dict) -> str:
    nums = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    items = [(k, nums[k]) for k in _HEADLINE if k in nums] or list(nums.items())
    return ", ".join(f"{k}={v:.4g}" for k, v in items[:8]) or "-"
