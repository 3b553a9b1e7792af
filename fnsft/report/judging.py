"""The hook for judge win rates: each stage's answers against the previous column's.

A judge is configured under ``report.judge`` (the same mapping the RLAIF stage takes for its
judge). When the judge component (:mod:`fnsft.judges`) is installed, it is asked through its
``build_judge(spec)`` factory for a judge whose ``compare(prompts, answers_a, answers_b)``
returns, per prompt, 1.0 (a better), 0.0 (b better), 0.5 (tie) or None (the verdict could not be
parsed: masked, never counted as a loss). Both orders are judged, so position bias cancels.
Without the component, the report says so once and shows no win rates.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

log = logging.getLogger("fnsft")


def win_rate(judge, prompts: list[str], new: list[str], old: list[str]) -> dict[str, Any]:
    """``new``'s win rate over ``old``: the mean verdict over both orders, masked ones left out."""
    forward = judge.compare(prompts, new, old)
    backward = judge.compare(prompts, old, new)
    votes = [v for v in forward if v is not None] + [1.0 - v for v in backward if v is not None]
    masked = sum(v is None for v in forward) + sum(v is None for v in backward)
    return {"win_rate": sum(votes) / len(votes) if votes else 0.0, "n": len(votes), "masked": masked}


def add_win_rates(data: dict[str, Any], spec: Optional[dict]) -> None:
    """Fill ``data["win_rates"][stage]`` for each column against the one before it."""
    if not spec:
        return
    try:
        from fnsft import judges  # noqa: F401  (the judge component, when installed)

        judge = judges.build_judge(spec)
    except (ImportError, AttributeError) as e:
        data["judge_error"] = f"report.judge is set but the judge component is unavailable ({e})"
        return
    cols = [c for c in data.get("columns", []) if c.get("answers")]
    wins = data.setdefault("win_rates", {})
    for prev, col in zip(cols, cols[1:]):
        key = f"{col['fingerprint']}|{prev['fingerprint']}"
        if wins.get(col["stage"], {}).get("key") == key:
            continue  # judged before (a resumed run); the judge's own cache also avoids paying twice
        try:
            wins[col["stage"]] = {**win_rate(judge, data["prompts"], col["answers"], prev["answers"]),
                                  "against": prev["stage"], "key": key}
        except Exception as e:  # a judge outage must not fail the run
            data["judge_error"] = f"{type(e).__name__}: {e}"
            log.warning("report: judge failed on %s vs %s: %s", col["stage"], prev["stage"], e)
