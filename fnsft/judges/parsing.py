"""Read a judge's verdict from its reply: text, or next-token log-probs when there are some.

- pairwise: the first ``A``/``B`` (or ``1``/``2``) token → P(first shown answer is better);
  with log-probs ``P(A) / (P(A) + P(B))``.
- pointwise: the first number of the reply, which must lie in ``score_range``; with log-probs
  the expected value ``Σ i·P(i) / Σ P(i)`` over the integers of the range.
- binary: the first ``yes``/``no`` → P(yes); with log-probs ``P(yes) / (P(yes) + P(no))``.

Anything else returns ``None``: the judgement is **masked** (left out and counted), never 0.
``top_logprobs`` is a list, one entry per generated token, of ``{token_text: logprob}``.
"""

from __future__ import annotations

import math
import re
from typing import Optional, Sequence

_PAIR = re.compile(r"(?<![A-Za-z0-9])(A|B|1|2)(?![A-Za-z0-9])")
_NUMBER = re.compile(r"(?<![\d.])-?\d+(?:\.\d+)?")
_YESNO = re.compile(r"(?<![A-Za-z])(yes|no)(?![A-Za-z])", re.IGNORECASE)
_FIRST = {"A": "first", "1": "first", "B": "second", "2": "second"}


def answer_options(kind: str, score_range: Sequence[int]) -> list[str]:
    """The answer strings whose next-token probabilities decide a verdict of ``kind``."""
    if kind == "pairwise":
        return ["A", "B"]
    if kind == "binary":
        return ["yes", "no"]
    lo, hi = int(score_range[0]), int(score_range[1])
    return [str(i) for i in range(lo, hi + 1)]


def from_option_probs(kind: str, probs: dict[str, float]) -> Optional[float]:
    """A verdict from probabilities over :func:`answer_options` (they need not sum to 1)."""
    total = sum(p for p in probs.values() if p > 0)
    if not total or not math.isfinite(total):
        return None
    if kind == "pairwise":
        return probs.get("A", 0.0) / total
    if kind == "binary":
        return probs.get("yes", 0.0) / total
    return sum(float(k) * p for k, p in probs.items() if p > 0) / total


def _option_of(token: str, kind: str, options: Sequence[str]) -> Optional[str]:
    t = token.strip().strip("[]()*\"'.:")
    if kind == "pairwise":
        side = _FIRST.get(t.upper() if len(t) == 1 else "")
        return None if side is None else ("A" if side == "first" else "B")
    if kind == "binary":
        return t.lower() if t.lower() in ("yes", "no") else None
    return t if t in options else None


def from_logprobs(kind: str, top_logprobs: list[dict[str, float]], options: Sequence[str]) -> Optional[float]:
    """The verdict at the first generated token whose most likely alternative is an answer."""
    for position in top_logprobs or []:
        if not position:
            continue
        best = max(position, key=position.get)
        if _option_of(best, kind, options) is None:
            continue
        probs: dict[str, float] = {}
        for token, lp in position.items():
            opt = _option_of(token, kind, options)
            if opt is not None and lp is not None and math.isfinite(lp):
                probs[opt] = probs.get(opt, 0.0) + math.exp(lp)
        return from_option_probs(kind, probs)
    return None


def from_text(kind: str, text: Optional[str], score_range: Sequence[int]) -> Optional[float]:
    """The verdict written in ``text`` (see the module docstring); ``None`` when there is none."""
    if not text:
        return None
    if kind == "pairwise":
        m = _PAIR.search(text)
        return None if m is None else (1.0 if _FIRST[m.group(1)] == "first" else 0.0)
    if kind == "binary":
        m = _YESNO.search(text)
        return None if m is None else float(m.group(1).lower() == "yes")
    m = _NUMBER.search(text)
    if m is None:
        return None
    value = float(m.group(0))
    return value if score_range[0] <= value <= score_range[1] else None


def parse_reply(kind: str, text: Optional[str], score_range: Sequence[int],
                top_logprobs: Optional[list[dict[str, float]]] = None) -> Optional[float]:
    """Log-probs first (a probability, not a hard 0/1), then the text; ``None`` = masked."""
    if top_logprobs:
        value = from_logprobs(kind, top_logprobs, answer_options(kind, score_range))
        if value is not None:
            return value
    return from_text(kind, text, score_range)


def from_function_value(kind: str, value, score_range: Sequence[int]) -> Optional[float]:
    """What a ``type: function`` judge returned: a number (checked against the kind's range), a
    reply text (parsed as a model's would be), ``True``/``False`` or ``None`` (masked)."""
    if value is None:
        return None
    if isinstance(value, str):
        return from_text(kind, value, score_range)
    if isinstance(value, bool):
        return float(value)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(value):
        return None
    lo, hi = (0.0, 1.0) if kind in ("pairwise", "binary") else (float(score_range[0]), float(score_range[1]))
    return value if lo <= value <= hi else None
