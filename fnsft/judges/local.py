"""``judge.type: local`` — judge prompts answered by a pool of :class:`fnsft.actors.judge.JudgeActor`.

The verdict comes from the next-token probabilities of the answer tokens (``A``/``B``, the
digits of ``score_range``, ``yes``/``no``): a probability or an expected score, never a sample.
"""

from __future__ import annotations

from fnsft.judges.base import Outcome
from fnsft.judges.parsing import answer_options, from_option_probs


class LocalBackend:
    """Splits each batch of judge prompts across the pool's replicas."""

    def __init__(self, pool, identity: str, score_range, min_answer_mass: float = 0.0):
        self.pool = pool
        self.identity = f"local:{identity}"
        self.score_range = list(score_range)
        self.min_answer_mass = min_answer_mass

    def judge(self, items: list[dict], kind: str) -> list[Outcome]:
        options = answer_options(kind, self.score_range)
        texts = [it["text"] for it in items]
        results = self.pool.split(texts, lambda actor, chunk: actor.option_probs.remote(chunk, options))
        out = []
        for r in results:
            # Almost no probability on any answer: the model is not answering the question asked.
            value = None if r["mass"] <= self.min_answer_mass else from_option_probs(kind, r["probs"])
            out.append(Outcome(value, tokens=r["tokens"], latency_s=r["latency_s"],
                               reply=max(r["probs"], key=r["probs"].get) if r["probs"] else ""))
        return out

    def close(self) -> None:
        """Stop the pool's actors (their CPUs go back to the stage); this backend judges no more."""
        self.pool.kill()
