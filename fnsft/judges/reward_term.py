"""The judge as a reward term (RLAIF ``mode: reward`` and ``preference``).

:class:`JudgeTerm` wraps a pointwise/binary :class:`~fnsft.judges.base.Judge` in the reward-term
contract (:mod:`fnsft.rl.reward_terms`): the judge's score in [0, 1] per completion, a masked
verdict flagged as a failed row (it leaves the update, never counts as 0), and the judge's
books for the batch as the term's stats (:class:`JudgeStats`: calls, cache hits, masked share,
score mean...). The reward actor sums it with the rule terms like any other term.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from fnsft.judges.base import delta, summarize
from fnsft.rl.reward_terms import TermScores, TermStats


class JudgeStats(TermStats):
    """A judge's raw counters for one batch (:meth:`fnsft.judges.base.Judge.counters` keys):
    shares of a batch add up; the metrics are :func:`~fnsft.judges.base.summarize`'s
    (``judge/masked_share`` is over all the judgements added up, not a mean of shares)."""

    def metrics(self, label: str) -> dict[str, float]:
        return summarize(self, prefix=label)


@dataclass
class JudgeTerm:
    """A pointwise/binary judge scoring every completion, normalised to [0, 1], times ``weight``
    (YAML ``rlaif.judge_weight``). Built on the driver and sent to each reward actor, where the
    judge reopens its cache and keeps its own books."""

    judge: object
    weight: float = 1.0
    label: str = "judge"
    # The judge's counters after the last batch: each batch reports only what it added.
    seen: Optional[dict] = field(default=None, init=False, repr=False)

    def score(self, prompts: list, completions: list[str], columns: dict[str, list]) -> TermScores:
        """Raises :class:`~fnsft.errors.StageError` when more of the batch is masked than
        ``judge.max_masked_share`` allows (:func:`~fnsft.judges.outage.check_masked_share`)."""
        from fnsft.judges.outage import check_masked_share

        scores = self.judge.pointwise(prompts, completions)
        now = self.judge.counters()
        stats = JudgeStats(delta(now, self.seen))
        self.seen = now
        check_masked_share(stats, self.judge.settings.max_masked_share, self.judge.key, "in one scoring batch")
        return TermScores([0.0 if s is None else s for s in scores], [s is None for s in scores], stats)
