"""The reward-term contract: every part of an RL reward is one term (TRL's ``reward_funcs`` list).

A term scores a batch of (prompt, completion) pairs plus the rows' extra columns::

    term.label      # its name in the metrics (``reward/<label>``, ``eval/<label>``)
    term.weight     # its weight in the summed reward
    term.score(prompts, completions, columns) -> TermScores

:class:`TermScores` holds one score per row, a failure mask (True where the term could not
score the row: a masked judge verdict; the score there is ignored) and the term's raw books
for the batch (:class:`TermStats`). Rule rewards and reward functions (:class:`FunctionTerm`),
reward models (:class:`fnsft.actors.reward.SequenceClassifierReward` in a :class:`FunctionTerm`)
and judges (:class:`fnsft.judges.reward_term.JudgeTerm`) are all terms; the reward actor
(:class:`fnsft.actors.reward.RewardActor`) sums them and knows none of them specially.

Plain Python (no torch), so a term runs anywhere: in the reward actor, in a test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Protocol, Sequence


class TermStats(dict):
    """A term's raw books for one batch (or a running total): numbers add up and lists
    concatenate, so the books of consecutive shares of a batch (reward replicas, score chunks)
    add up to the books of the whole batch.

    :meth:`metrics` turns them into readable metrics; this default reports every number as
    ``<label>/<key>``. A term whose metrics are ratios (a judge's masked share) returns a subclass
    that overrides it (:class:`fnsft.judges.reward_term.JudgeStats`).
    """

    def __add__(self, other: "TermStats") -> "TermStats":
        out = type(self)(self)
        for k, v in other.items():
            out[k] = out[k] + v if k in out else (list(v) if isinstance(v, list) else v)
        return out

    def metrics(self, label: str) -> dict[str, float]:
        return {f"{label}/{k}": float(v) for k, v in self.items() if isinstance(v, (int, float))}


@dataclass
class TermScores:
    """What a term returns for a batch: ``scores`` (one per row; ignored where ``failed``), the
    failure mask, and its books (:class:`TermStats`; empty for a term that keeps none)."""

    scores: list[float]
    failed: list[bool]
    stats: TermStats = field(default_factory=TermStats)


class RewardTerm(Protocol):
    """One weighted part of the reward (see the module docstring)."""

    label: str
    weight: float

    def score(self, prompts: list, completions: list[str], columns: dict[str, list]) -> TermScores: ...


@dataclass
class FunctionTerm:
    """A TRL-style reward function as a term (``fn(prompts, completions, **columns) -> list``):
    a built-in rule, a user function (YAML ``rl.rewards``, :func:`fnsft.rl.rewards.rule_function`)
    or a reward model. ``None`` from the function is "no opinion" and counts as 0, never a failure.

    ``fixed``: keyword arguments from the YAML entry. ``text_prompts``: rules and user functions see
    a chat prompt as its text; a reward model (``False``) gets the structured prompt to template it.

    ``timeout_s`` (YAML ``rl.rewards[].timeout_s``): the function runs in a process of its own
    (:class:`fnsft.rl.reward_deadline.DeadlineScorer`) for at most this long per batch; rows not
    scored by then fail, and the books count ``timeouts`` and ``timed_out_rows``. ``None``: called
    in-process, unbounded (a reward model). ``row_wise``: the function scores each row on its own
    (the built-in rules), so the rows scored before the deadline keep their scores.
    """

    label: str
    weight: float
    fn: Any
    fixed: dict[str, Any] = field(default_factory=dict)
    text_prompts: bool = True
    timeout_s: Optional[float] = None
    row_wise: bool = False
    _scorer: Any = field(default=None, init=False, repr=False, compare=False)

    def score(self, prompts: list, completions: list[str], columns: dict[str, list]) -> TermScores:
        from fnsft.models.tokens import prompt_text
        from fnsft.rl.rewards import call_reward

        ps = [p if isinstance(p, list) else prompt_text(p) for p in prompts] if self.text_prompts else prompts
        if self.timeout_s is None:
            scores = call_reward(self.fn, ps, completions, columns, self.fixed, self.label)
            return TermScores(scores, [False] * len(scores))
        if self._scorer is None:
            from fnsft.rl.reward_deadline import DeadlineScorer

            self._scorer = DeadlineScorer(self.fn, self.fixed, self.label, self.row_wise, self.timeout_s)
        got, timed_out = self._scorer.score(ps, completions, columns)
        failed = [s is None for s in got]
        stats = TermStats(timeouts=1, timed_out_rows=sum(failed)) if timed_out else TermStats()
        return TermScores([0.0 if s is None else s for s in got], failed, stats)


def add_stats(parts: Sequence[dict[str, TermStats]]) -> dict[str, TermStats]:
    """Per term label, the sum of the books in ``parts`` (shares of a batch, or replicas' totals)."""
    out: dict[str, TermStats] = {}
    for part in parts:
        for label, stats in part.items():
            out[label] = out[label] + stats if label in out else stats
    return out


def stats_metrics(stats: dict[str, TermStats]) -> dict[str, float]:
    """Every term's readable metrics (``judge/calls``, ``judge/masked_share``...), in term order."""
    return {k: v for label, s in stats.items() for k, v in s.metrics(label).items()}


def filled(term: TermScores, n: int, label: str) -> list[float]:
    """``term.scores`` with every failed row set to the mean of the rows it scored: a placeholder
    that keeps the components and the summed reward finite (the failed row leaves the update, so
    it carries no gradient). Checks the lengths against the batch's ``n`` rows."""
    if len(term.scores) != n or len(term.failed) != n:
        raise ValueError(f"reward {label} returned {len(term.scores)} scores and {len(term.failed)} "
                         f"failure flags for {n} completions")
    known = [s for s, f in zip(term.scores, term.failed) if not f]
    fill = sum(known) / len(known) if known else 0.0
    return [fill if f else float(s) for s, f in zip(term.scores, term.failed)]



def check_some_scored(masked: Sequence[bool], metrics: dict[str, float], what: str) -> None:
    """A :class:`fnsft.errors.StageError` when no row of a batch could be scored (every rule timed
    out, every verdict was masked): an update on it would train on nothing, yet look like success.
    ``metrics``: the batch's term metrics, quoted so the line says which term failed and how."""
    from fnsft.errors import StageError

    if not masked or not all(masked):
        return
    books = ", ".join(f"{k}={v:g}" for k, v in metrics.items()
                      if k.endswith(("timeouts", "timed_out_rows", "masked_share", "errors")))
    raise StageError(f"no completion of {what} could be scored ({len(masked)} of {len(masked)} masked"
                     f"{'; ' + books if books else ''}): raise the reward's timeout_s or fix the reward, "
                     "nothing would be trained on")
