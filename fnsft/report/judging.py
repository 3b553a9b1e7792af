"""Judge win rates in the report: each stage's answers against the previous column's.

A judge is configured under ``report.judge`` (the same mapping the RLAIF stage takes for its
judge: :class:`fnsft.judges.JudgeSettings`). :func:`fnsft.judges.winrate.win_rate` judges both
orders (``position_debias: both_orders``), so position bias cancels; unparseable verdicts are
masked, never counted as a loss. Judgements are cached in ``<output_dir>/report_judge_cache.jsonl``,
so a rebuilt or resumed report never pays twice.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Optional

log = logging.getLogger("fnsft")


def report_judge_settings(spec: dict, key: str = "report.judge"):
    """``report.judge`` as JudgeSettings, checked (one-line ConfigError naming the key)."""
    from fnsft.config.parse import parse_dataclass
    from fnsft.judges.settings import JudgeSettings, check_judge_settings

    settings = parse_dataclass(JudgeSettings, dict(spec), key)
    check_judge_settings(settings, key, ".")
    return settings


def add_win_rates(data: dict[str, Any], spec: Optional[dict], output_dir: str = ".") -> None:
    """Fill ``data["win_rates"][stage]`` for each column against the one before it."""
    if not spec:
        return
    from fnsft.judges import build_judge
    from fnsft.judges.winrate import win_rate

    judge = None
    cols = [c for c in data.get("columns", []) if c.get("answers")]
    wins = data.setdefault("win_rates", {})
    try:
        for prev, col in zip(cols, cols[1:]):
            key = f"{col['fingerprint']}|{prev['fingerprint']}"
            if wins.get(col["stage"], {}).get("key") == key:
                continue  # judged before (a resumed run)
            if judge is None:
                judge = build_judge(report_judge_settings(spec), name="report-judge",
                                    cache_path=os.path.join(output_dir, "report_judge_cache.jsonl"))
            result = win_rate(judge, data["prompts"], col["answers"], prev["answers"])
            wins[col["stage"]] = {"win_rate": result["win_rate"], "n": result.get("n", 0),
                                  "masked": result.get("masked", 0), "against": prev["stage"], "key": key}
    except Exception as e:  # a judge outage must not fail the run
        data["judge_error"] = f"{type(e).__name__}: {e}"
        log.warning("report: judge failed: %s", e)
    finally:
        if judge is not None:
            judge.close()  # its local pool or its API actor
