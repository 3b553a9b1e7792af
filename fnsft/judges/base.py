"""One judge interface over every backend (YAML ``judge:``): pointwise, pairwise, binary.

:class:`Judge` renders the template, picks principles and the order answers are shown in,
looks every judgement up in the cache (keyed by judge identity, template, inputs and order),
sends only the missing ones to its backend in one batch, and keeps the books (calls, cache
hits, masked share, ties, position consistency, latency, tokens). A parse failure or a failed
call is ``None`` — masked, counted — never a score of 0.

A backend has ``identity`` (a string that changes when its verdicts would),
``judge(items, kind) -> list[Outcome]`` and ``close()`` (stop what it started); each item holds ``text`` (the rendered judge prompt)
and the raw ``prompt``/``response`` (``first``/``second`` for pairwise) for function judges.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from fnsft.errors import BudgetExhausted
from fnsft.judges.settings import JudgeSettings


class JudgeBudgetExhausted(BudgetExhausted):
    """``max_judge_calls`` is spent; every judgement made so far is in the cache."""


class _MemoryCache(dict):
    """The cache of a judge without an output folder (tests, notebooks)."""

    def put(self, key: str, value) -> None:
        self[key] = value


@dataclass
class Outcome:
    """A backend's answer to one judge prompt: the verdict in the kind's own scale, or None."""

    value: Optional[float]
    error: Optional[str] = None  # a failed call (not cached: a rerun asks again)
    tokens: int = 0
    latency_s: float = 0.0
    reply: str = ""


@dataclass
class JudgeBooks:
    """A judge's running counters (the numbers behind its metrics, :func:`summarize`) and the
    budget its calls are reserved from (``max_judge_calls``; a :class:`~fnsft.judges.budget.CallBudget`
    or the run's shared one, None: no cap). Judges given the same object share both; a copy of
    the judge sent to another process keeps the budget and starts fresh books."""

    judgements: int = 0
    calls: int = 0
    cache_hits: int = 0
    masked: int = 0
    errors: int = 0
    pairs: int = 0
    ties: int = 0
    both_orders: int = 0
    consistent: int = 0
    latency_s: float = 0.0
    tokens: int = 0
    values: list = field(default_factory=list)
    # failed calls by kind (fnsft.judges.outage.error_kind): what a masked-share stop names
    errors_http_5xx: int = 0
    errors_http_429: int = 0
    errors_http_other: int = 0
    errors_timeout: int = 0
    errors_connection: int = 0
    errors_unreadable: int = 0
    errors_other: int = 0
    budget: Any = field(default=None, repr=False, compare=False)

    def counters(self) -> dict[str, Any]:
        """The counters alone (lists copied), as :meth:`Judge.counters` reports them."""
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self.__dict__.items() if k != "budget"}


def summarize(c: dict, prefix: str = "judge") -> dict[str, float]:
    """Readable judge metrics (``<prefix>/calls``...) from raw counters (cumulative, or a
    difference of two snapshots)."""
    out = _summary(c)
    return out if prefix == "judge" else {prefix + k[len("judge"):]: v for k, v in out.items()}


def _summary(c: dict) -> dict[str, float]:
    n = max(c["judgements"], 1)
    values = [v for v in c.get("values", []) if v is not None]
    out = {"judge/judgements": float(c["judgements"]), "judge/calls": float(c["calls"]),
           "judge/cache_hits": float(c["cache_hits"]), "judge/masked_share": c["masked"] / n,
           "judge/errors": float(c["errors"]), "judge/tokens": float(c["tokens"]),
           "judge/latency_s": c["latency_s"] / max(c["calls"], 1)}
    if values:
        mean = sum(values) / len(values)
        out["judge/score_mean"] = mean
        out["judge/score_std"] = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
    if c["pairs"]:
        out["judge/tie_share"] = c["ties"] / c["pairs"]
    if c["both_orders"]:
        out["judge/position_consistency"] = c["consistent"] / c["both_orders"]
    out.update({f"judge/{k}": float(v) for k, v in c.items() if k.startswith("errors_") and v})
    return out


class Judge:
    """Score or compare responses with an AI judge (see the module docstring).

    Args:
        settings: the ``judge:`` section (already checked).
        backend: a function, local-actor or API backend (:func:`fnsft.judges.build_judge`).
        cache_path: the jsonl cache under the stage's output folder (``None``: memory only).
        principles: the constitution, when there is one.
        books: counters shared with another judge of the stage (one budget, one set of books);
            default: its own.
    """

    def __init__(self, settings: JudgeSettings, backend, cache_path: Optional[str] = None,
                 principles: Optional[list[str]] = None, template_text: Optional[str] = None,
                 key: str = "judge", books: Optional[JudgeBooks] = None):
        from fnsft.judges.templates import resolve_template

        self.settings = settings
        self.key = key  # the YAML path named in messages (stage_configs.rlaif.judge)
        self.backend = backend
        self.cache_path = cache_path
        self.principles = list(principles or settings.principles or [])
        self.template = template_text or (resolve_template(settings.template, settings.kind)
                                          if settings.type != "function" else "")
        self._cache = None
        self.books = books if books is not None else JudgeBooks()
        if self.books.budget is None and settings.max_judge_calls:
            from fnsft.judges.budget import CallBudget

            self.books.budget = CallBudget(settings.max_judge_calls)

    def __getstate__(self):  # travels to a reward actor: reopen the cache there, keep books there,
        state = dict(self.__dict__)  # spend the run's one budget
        state["_cache"] = None
        state["books"] = JudgeBooks(budget=self.books.budget)
        return state

    @property
    def kind(self) -> str:
        return self.settings.kind

    @property
    def cache(self):
        if self._cache is None:
            from fnsft.actors.call_cache import CallCache

            self._cache = CallCache(self.cache_path) if self.cache_path else _MemoryCache()
        return self._cache

    # Public API ---------------------------------------------------------------------------
    def pointwise(self, prompts: Sequence[str], responses: Sequence[str], normalise: bool = True) -> list[Optional[float]]:
        """One score per response (``kind: pointwise`` or ``binary``); in [0, 1] when ``normalise``
        (pointwise: ``(score - low) / (high - low)``; binary: P(yes) already), else on ``score_range``.
        """
        if self.kind == "pairwise":
            raise ValueError("a pairwise judge compares two responses: call pairwise()")
        values = self._run([(p, r, None) for p, r in zip(prompts, responses)])
        self._count_values(values)
        if not normalise or self.kind == "binary":
            return values
        lo, hi = self.settings.score_range
        return [None if v is None else (v - lo) / (hi - lo) for v in values]

    def pairwise(self, prompts: Sequence[str], a: Sequence[str], b: Sequence[str]) -> list[Optional[float]]:
        """P(``a[i]`` is better than ``b[i]``) per item, with the configured position debiasing.

        ``both_orders`` asks (a, b) and (b, a) and averages ``p_ab`` with ``1 - p_ba`` (one order
        alone when the other is masked; ``None`` when both are); ``random`` shows one order
        chosen per item (deterministically, so reruns hit the cache); ``none`` shows (a, b).
        """
        if self.kind != "pairwise":
            raise ValueError(f"a {self.kind} judge scores one response at a time: call pointwise()")
        mode = self.settings.position_debias
        items, plan = [], []
        for p, x, y in zip(prompts, a, b):
            if mode == "both_orders":
                plan.append((len(items), len(items) + 1))
                items += [(p, x, y), (p, y, x)]
            else:
                swap = mode == "random" and self._rng(p, x, y, "order").random() < 0.5
                plan.append((None, len(items)) if swap else (len(items), None))
                items.append((p, y, x) if swap else (p, x, y))
        values = self._run(items)
        c = self.books
        out: list[Optional[float]] = []
        for ab, ba in plan:
            v_ab = values[ab] if ab is not None else None
            v_ba = values[ba] if ba is not None else None
            if ab is not None and ba is not None and v_ab is not None and v_ba is not None:
                c.both_orders += 1
                c.consistent += int((v_ab - 0.5) * (v_ba - 0.5) < 0)
            parts = ([v_ab] if v_ab is not None else []) + ([1.0 - v_ba] if v_ba is not None else [])
            pref = sum(parts) / len(parts) if parts else None
            if pref is not None:
                c.pairs += 1
                c.ties += int(abs(pref - 0.5) < 1e-6)
            out.append(pref)
        self._count_values(out)
        return out

    def counters(self) -> dict[str, Any]:
        """Raw cumulative counters (subtract two snapshots with :func:`delta` for one iteration)."""
        return self.books.counters()

    def stats(self) -> dict[str, float]:
        """Cumulative metrics: calls, cache hits, masked share, tie share, position consistency,
        mean latency per call, tokens, score mean/std."""
        return summarize(self.counters())

    def close(self) -> None:
        """Stop what the backend started (a local judge's actor pool): this judge judges no more."""
        self.backend.close()

    # Internals ----------------------------------------------------------------------------
    def _count_values(self, values: list) -> None:
        self.books.values.extend(values)

    def _rng(self, *parts) -> random.Random:
        from fnsft.actors.call_cache import cache_key

        return random.Random(cache_key(self.settings.seed, *parts))

    def _principles_for(self, prompt: str, first: str, second: Optional[str]) -> str:
        if not self.principles:
            return ""
        if self.settings.principle_sampling == "all":
            chosen = self.principles
        else:  # one per judgement, the same for both orders of a pair
            pair = sorted([first, second or ""])
            chosen = [self._rng(prompt, *pair, "principle").choice(self.principles)]
        return "\n".join(f"- {p}" for p in chosen)

    def _item(self, prompt: str, first: str, second: Optional[str]) -> dict:
        from fnsft.judges.templates import render

        lo, hi = self.settings.score_range
        principles = self._principles_for(prompt, first, second)
        values = {"prompt": prompt, "principles": principles, "score_min": str(lo), "score_max": str(hi)}
        if second is None:
            values["response"] = first
        else:
            values.update(response_a=first, response_b=second)
        text = render(self.template, values) if self.template else ""
        return {"prompt": prompt, "first": first, "second": second, "principles": principles, "text": text}

    def _key(self, item: dict) -> str:
        from fnsft.actors.call_cache import cache_key

        s = self.settings
        return cache_key(self.backend.identity, s.kind, list(s.score_range), self.template,
                         item["principles"], item["prompt"], item["first"], item["second"])

    def _run(self, triples: list[tuple]) -> list[Optional[float]]:
        """Verdicts (the kind's own scale) for (prompt, first, second) triples; cache first."""
        from fnsft.models.tokens import prompt_text

        c = self.books
        items = [self._item(prompt_text(p), str(f), None if s is None else str(s)) for p, f, s in triples]
        keys = [self._key(it) for it in items]
        values: list[Optional[float]] = [None] * len(items)
        todo = []
        for i, k in enumerate(keys):
            hit = self.cache.get(k)
            if hit is not None:
                values[i] = hit.get("value")
                c.cache_hits += 1
            else:
                todo.append(i)
        c.judgements += len(items)
        budget = c.budget
        allowed = todo if budget is None or not todo else todo[:budget.reserve(len(todo))]
        if allowed:
            t0 = time.perf_counter()
            outcomes = self.backend.judge([items[i] for i in allowed], self.kind)
            elapsed = time.perf_counter() - t0
            c.calls += len(allowed)
            c.latency_s += sum(o.latency_s for o in outcomes) or elapsed
            for i, o in zip(allowed, outcomes):
                c.tokens += o.tokens
                values[i] = o.value
                if o.error:
                    from fnsft.judges.outage import error_kind

                    c.errors += 1
                    kind = error_kind(o.error)
                    setattr(c, kind, getattr(c, kind) + 1)
                elif o.value is not None or o.reply.strip():
                    # A parse failure is cached too (same inputs, same reply); a failed call or an
                    # empty reply (an endpoint in trouble answers 200 with nothing) is asked again.
                    self.cache.put(keys[i], {"value": o.value, "reply": o.reply[:200]})
        c.masked += sum(v is None for v in values)
        if len(allowed) < len(todo):
            raise JudgeBudgetExhausted(
                f"{self.key}.max_judge_calls: the budget of {budget.cap} judge calls is spent "
                f"({len(todo) - len(allowed)} judgements left undone); the {len(self.cache)} judgements made "
                f"are kept in {self.cache_path or 'memory'} and a rerun with a higher cap reuses them")
        return values


def delta(now: dict, before: Optional[dict]) -> dict:
    """Counters accumulated between two :meth:`Judge.counters` snapshots."""
    if before is None:
        return now
    return {k: (now[k][len(before[k]):] if isinstance(now[k], list) else now[k] - before[k]) for k in now}
