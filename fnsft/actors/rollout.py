"""One round of experience from the role actors: prompts → generate → score (→ reference).

:func:`collect_rollout` is what the RL trainer's rank 0 calls each iteration (and what RLAIF
and CoT distillation reuse); it returns a :class:`Rollout`, the one batch object that then
travels to every training rank. Timings are split by role.

Scoring overlaps generation: with ``rl.generation.score_chunks: k`` each generation replica gets
its share in ``k`` calls, and every chunk goes to the reward actors the moment it is generated
(RLAIF's judge scores the first prompts while the policy still samples the rest). Chunks hold
whole prompts, so a group of ``num_generations`` completions is never cut in two.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np


@dataclass
class Rollout:
    """A sampled batch: ``num_generations`` consecutive completions per prompt.

    ``arrays`` holds the padded batch (:func:`fnsft.actors.modeling.rollout_arrays`),
    ``scores (B,)`` and, with a reference actor, ``ref_logprobs (B, C)``.
    """

    arrays: dict[str, np.ndarray]
    prompts: list
    completions: list[str]
    components: dict[str, list[float]] = field(default_factory=dict)
    truncated: list[bool] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # e.g. the judge's books for this batch
    masked: list[bool] = field(default_factory=list)  # rows left out of the update (failed judgements)
    # (role, start, end) of every generation and scoring call, wall clock as the actors saw it:
    # a scoring span that starts before the last generation span ends is overlap.
    spans: list[tuple[str, float, float]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.completions)


def expand_rows(rows: list[dict], num_generations: int) -> tuple[list, dict[str, list]]:
    """Prompts repeated ``num_generations`` times (consecutively) and the extra columns aligned."""
    prompts = [r["prompt"] for r in rows for _ in range(num_generations)]
    keys = sorted({k for r in rows for k in r if k != "prompt"})
    columns = {k: [r.get(k) for r in rows for _ in range(num_generations)] for k in keys}
    return prompts, columns


def chunk_bounds(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous, near-equal ``(start, end)`` ranges of ``range(n)`` (empty ones dropped)."""
    parts = max(1, min(parts, n))
    return [(i * n // parts, (i + 1) * n // parts) for i in range(parts) if (i + 1) * n // parts > i * n // parts]


def collect_rollout(roles, rows: list[dict], *, num_generations: int, sampling: dict, pad_id: int,
                    seed: Optional[int] = None, reference_temperature: float = 1.0,
                    use_reference_actor: bool = True, score_chunks: int = 1) -> Rollout:
    """Generate, score and (with a reference actor) get reference log-probs for ``rows``.

    ``score_chunks``: generate calls per generation replica; each chunk is scored as soon as it
    is generated (1: every replica generates its whole share, then scoring starts).
    """
    import ray

    from fnsft.actors.modeling import rollout_arrays

    prompts, columns = expand_rows(rows, num_generations)
    g = num_generations
    timings: dict[str, float] = {}
    gen_actors = roles.generation.actors
    # Contiguous blocks of prompts per replica (as ActorGroup.split), each cut into score_chunks
    # calls; a replica runs its calls in order, so chunk 1 is done while chunk 2 is generating.
    pieces = [(r, (ra + x) * g, (ra + y) * g) for r, (ra, rb) in enumerate(chunk_bounds(len(rows), len(gen_actors)))
              for x, y in chunk_bounds(rb - ra, score_chunks)]

    t0 = time.perf_counter()
    pending = {gen_actors[r].generate.remote(prompts[a:b], sampling, None if seed is None else seed + a): i
               for i, (r, a, b) in enumerate(pieces)}
    gen_parts: dict[int, dict] = {}
    score_refs: dict[int, list] = {}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        i = pending.pop(done[0])
        gen_parts[i] = part = ray.get(done[0])
        if roles.reward is not None:  # score this chunk now, while the others generate
            _, a, b = pieces[i]
            score_refs[i] = submit_scores(roles.reward, prompts[a:b], part["texts"],
                                          {k: v[a:b] for k, v in columns.items()}, part["completion_ids"])
    timings["generation_s"] = time.perf_counter() - t0
    gen = {k: [x for i in range(len(pieces)) for x in gen_parts[i][k]]
           for k in ("prompt_ids", "completion_ids", "texts", "truncated")}
    spans = [("generation", *gen_parts[i]["span"]) for i in range(len(pieces)) if "span" in gen_parts[i]]
    arrays = rollout_arrays(gen["prompt_ids"], gen["completion_ids"], pad_id)

    t0 = time.perf_counter()
    ref_ref = None
    if use_reference_actor and roles.reference is not None:
        # Reference scoring runs while the reward actor scores: both only read the batch.
        ref_ref = roles.reference.actors[0].logprobs.remote(arrays, reference_temperature) \
            if len(roles.reference) == 1 else None
    components: dict[str, Any] = {}
    metrics: dict[str, float] = {}
    masked: list[bool] = []
    scores = np.zeros(len(prompts), np.float32)
    if roles.reward is not None:
        out = merge_scores([p for i in range(len(pieces)) for p in ray.get(score_refs[i])])
        scores = np.asarray(out["rewards"], np.float32)
        components = out["components"]
        metrics = out.get("metrics", {})
        masked = out.get("masked", [])
        spans += [("reward", *s) for s in out.get("spans", [])]
        if any(masked):
            # A failed judgement is no reward at all (never 0): its row leaves every loss term.
            arrays["completion_mask"][np.asarray(masked, bool)] = 0
        timings["reward_s"] = time.perf_counter() - t0
        gen_spans = [s for s in spans if s[0] == "generation"]
        if gen_spans:  # scoring time hidden behind generation (0 with score_chunks 1 and one replica)
            g0, g1 = min(s[1] for s in gen_spans), max(s[2] for s in gen_spans)
            timings["score_overlap_s"] = sum(max(0.0, min(e, g1) - max(s, g0)) for r, s, e in spans if r == "reward")
    if use_reference_actor and roles.reference is not None:
        if ref_ref is not None:
            arrays["ref_logprobs"] = ray.get(ref_ref)
        else:
            idx = list(range(len(prompts)))
            parts = roles.reference.split(idx, lambda actor, ix: actor.logprobs.remote(
                {k: v[ix[0]:ix[-1] + 1] for k, v in arrays.items()}, reference_temperature))
            arrays["ref_logprobs"] = np.stack(parts)
    # Reward and reference run side by side: their wall time together is the scoring time.
    timings["scoring_s"] = time.perf_counter() - t0
    arrays["scores"] = scores
    return Rollout(arrays=arrays, prompts=prompts, completions=gen["texts"], components=components,
                   truncated=gen["truncated"], timings=timings, metrics=metrics, masked=masked, spans=spans)


def submit_scores(reward, prompts: list, texts: list[str], columns: dict[str, list],
                  completion_ids: list[list[int]]) -> list:
    """Start scoring on every replica of the ``reward`` group (``rl.reward.num_replicas``), each on
    a contiguous share; returns their ObjectRefs (in order) without waiting."""
    return [actor.score.remote(prompts[a:b], texts[a:b], {c: v[a:b] for c, v in columns.items()},
                               completion_ids[a:b])
            for actor, (a, b) in zip(reward.actors, chunk_bounds(len(prompts), len(reward.actors)))]


def score_split(reward, prompts: list, texts: list[str], columns: dict[str, list],
                completion_ids: list[list[int]]) -> dict[str, Any]:
    """Score with every replica of the ``reward`` group, the outputs joined as one
    :meth:`RewardActor.score` answer (see :func:`merge_scores`)."""
    import ray

    return merge_scores(ray.get(submit_scores(reward, prompts, texts, columns, completion_ids)))


def merge_scores(parts: list[dict]) -> dict[str, Any]:
    """Join :meth:`RewardActor.score` answers for consecutive shares of a batch into one.

    ``seconds``: the slowest share's time per term; ``spans``: every share's; the judge's books
    are added up from the raw counters each share returns (calls and cache hits sum, shares and
    means are over all judgements).
    """
    if len(parts) == 1:
        out = dict(parts[0])
        out["spans"] = [out["span"]] if "span" in out else []
        return out
    out = {"rewards": [x for p in parts for x in p["rewards"]],
           "components": {label: [x for p in parts for x in p["components"][label]] for label in parts[0]["components"]},
           "seconds": {label: max(p["seconds"][label] for p in parts) for label in parts[0]["seconds"]},
           "spans": [p["span"] for p in parts if "span" in p]}
    if any("masked" in p for p in parts):  # a judge term: failed judgements are masked rows
        out["masked"] = [x for p in parts for x in p.get("masked", [False] * len(p["rewards"]))]
    counters = [p["judge_counters"] for p in parts if p.get("judge_counters")]
    if counters:
        from fnsft.judges.base import summarize

        total = {k: ([x for c in counters for x in c[k]] if isinstance(counters[0][k], list)
                     else sum(c[k] for c in counters)) for k in counters[0]}
        out["metrics"] = summarize(total)
    return out
