"""Win rate of one set of answers over another, judged (RLAIF's end-of-stage number, the run report).

A pairwise judge compares each pair in both orders (or as ``position_debias`` says); a pointwise
judge that cannot compare (a function scorer) scores both answers and the higher score wins.
Ties count half; masked comparisons are left out and counted.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional, Sequence


def pairwise_judge(judge):
    """A judge that compares two answers: ``judge`` itself, or — for a local/API pointwise judge on a
    shipped template — the same backend asked the shipped pairwise question. ``None`` for
    function judges, which are compared by their scores."""
    from fnsft.judges.base import Judge
    from fnsft.judges.templates import shipped_template

    s = judge.settings
    if s.kind == "pairwise":
        return judge
    if s.type == "function":
        return None
    name = s.template if s.template in ("helpfulness", "harmlessness") else "helpfulness"
    if s.template not in (None, "", "helpfulness", "harmlessness"):
        return None  # a custom pointwise question has no pairwise twin: compare scores
    settings = replace(s, kind="pairwise", template=name, position_debias="both_orders")
    return Judge(settings, judge.backend, cache_path=judge.cache_path, principles=judge.principles,
                 template_text=shipped_template(name, "pairwise"))


def win_rate(judge, prompts: Sequence, new: Sequence[str], old: Sequence[str]) -> dict[str, float]:
    """``win_rate`` (P(new better), ties half), ``tie_rate``, ``n`` judged, ``masked``; plus
    ``preferences`` (one per item, ``None`` masked) for the record."""
    pair = pairwise_judge(judge)
    if pair is not None:
        prefs: list[Optional[float]] = pair.pairwise(prompts, new, old)
        method = f"pairwise ({pair.settings.position_debias})"
    else:
        a = judge.pointwise(prompts, new)
        b = judge.pointwise(prompts, old)
        prefs = [None if x is None or y is None else (1.0 if x > y else 0.0 if x < y else 0.5) for x, y in zip(a, b)]
        method = "pointwise scores compared"
    known = [p for p in prefs if p is not None]
    out = {"win_rate": sum(known) / len(known) if known else float("nan"),
           "tie_rate": sum(abs(p - 0.5) < 1e-6 for p in known) / len(known) if known else float("nan"),
           "n": float(len(known)), "masked": float(len(prefs) - len(known))}
    if pair is not None and "judge/position_consistency" in pair.stats():
        out["position_consistency"] = pair.stats()["judge/position_consistency"]
    return {**out, "method": method, "preferences": prefs}
