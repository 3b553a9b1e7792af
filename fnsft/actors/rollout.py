"""One round of experience from the role actors: prompts → generate → score (→ reference).

:func:`collect_rollout` is what the RL trainer's rank 0 calls each iteration (and what RLAIF
and CoT distillation reuse); it returns a :class:`Rollout`, the one batch object that then
travels to every training rank. Timings are split by role.
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

    def __len__(self) -> int:
        return len(self.completions)


def expand_rows(rows: list[dict], num_generations: int) -> tuple[list, dict[str, list]]:
    """Prompts repeated ``num_generations`` times (consecutively) and the extra columns aligned."""
    prompts = [r["prompt"] for r in rows for _ in range(num_generations)]
    keys = sorted({k for r in rows for k in r if k != "prompt"})
    columns = {k: [r.get(k) for r in rows for _ in range(num_generations)] for k in keys}
    return prompts, columns


def collect_rollout(roles, rows: list[dict], *, num_generations: int, sampling: dict, pad_id: int,
                    seed: Optional[int] = None, reference_temperature: float = 1.0,
                    use_reference_actor: bool = True) -> Rollout:
    """Generate, score and (with a reference actor) get reference log-probs for ``rows``."""
    from fnsft.actors.modeling import rollout_arrays

    prompts, columns = expand_rows(rows, num_generations)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    gen = roles.generation.split(
        list(range(len(prompts))),
        lambda actor, idx: actor.generate.remote([prompts[i] for i in idx], sampling,
                                                 None if seed is None else seed + idx[0]))
    timings["generation_s"] = time.perf_counter() - t0
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
        out = score_split(roles.reward, prompts, gen["texts"], columns, gen["completion_ids"])
        scores = np.asarray(out["rewards"], np.float32)
        components = out["components"]
        metrics = out.get("metrics", {})
        masked = out.get("masked", [])
        if any(masked):
            # A failed judgement is no reward at all (never 0): its row leaves every loss term.
            arrays["completion_mask"][np.asarray(masked, bool)] = 0
        timings["reward_s"] = time.perf_counter() - t0
    if use_reference_actor and roles.reference is not None:
        import ray

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
                   truncated=gen["truncated"], timings=timings, metrics=metrics, masked=masked)


def score_split(reward, prompts: list, texts: list[str], columns: dict[str, list],
                completion_ids: list[list[int]]) -> dict[str, Any]:
    """Score with every replica of the ``reward`` group (``rl.reward.num_replicas``), each on a
    contiguous share of the batch; the outputs joined as one :meth:`RewardActor.score` answer
    (``seconds``: the slowest replica's time per term)."""
    import ray

    n, k = len(prompts), len(reward.actors)
    bounds = [(i * n // k, (i + 1) * n // k) for i in range(k)]
    refs = [actor.score.remote(prompts[a:b], texts[a:b], {c: v[a:b] for c, v in columns.items()},
                               completion_ids[a:b])
            for actor, (a, b) in zip(reward.actors, bounds) if b > a]
    parts = ray.get(refs)
    if len(parts) == 1:
        return parts[0]
    out = {"rewards": [x for p in parts for x in p["rewards"]],
           "components": {label: [x for p in parts for x in p["components"][label]] for label in parts[0]["components"]},
           "seconds": {label: max(p["seconds"][label] for p in parts) for label in parts[0]["seconds"]}}
    if any("masked" in p for p in parts):  # a judge term: failed judgements are masked rows
        out["masked"] = [x for p in parts for x in p.get("masked", [False] * len(p["rewards"]))]
    metrics = [p["metrics"] for p in parts if p.get("metrics")]
    if metrics:  # per-replica judge counters: their mean is the batch's (equal shares)
        out["metrics"] = {k: sum(m[k] for m in metrics) / len(metrics) for k in metrics[0]}
    return out
