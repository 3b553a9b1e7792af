"""One round of experience from the role actors: prompts → generate → score (→ reference).

:func:`collect_rollout` is what the RL trainer's rank 0 calls each iteration (and what RLAIF
and CoT distillation reuse); it returns a :class:`Rollout`, the one batch object that then
travels to every training rank. Timings are split by role.

Scoring overlaps generation: with ``rl.generation.score_chunks: k`` each generation replica gets
its share in ``k`` calls, and every chunk goes to the reward actors the moment it is generated
(RLAIF's judge scores the first prompts while the policy still samples the rest). Chunks hold
whole prompts, so a group of ``num_generations`` completions is never cut in two.

Every wait on a role actor is bounded (``timeout_s``, YAML ``rl.role_timeout_s``): an actor that
never answers (a hung generate, a stuck reward) stops the stage with one line naming the role
and the wait (:func:`bounded_get`), never a silent hang.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from fnsft.errors import StageError

# The default bound of one wait on a role actor (rl.role_timeout_s): generous, as a CPU replica
# may take minutes for a large batch; it exists so that a hung actor stops the stage.
ROLE_TIMEOUT_S = 1800.0


@dataclass
class Rollout:
    """A sampled batch: ``num_generations`` consecutive completions per prompt.

    ``arrays`` holds the padded batch (:func:`fnsft.models.tokens.rollout_arrays`),
    ``scores (B,)`` and, with a reference actor, ``ref_logprobs (B, C)``.
    """

    arrays: dict[str, np.ndarray]
    prompts: list
    completions: list[str]
    components: dict[str, list[float]] = field(default_factory=dict)
    truncated: list[bool] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # the reward terms' books, e.g. judge/calls
    masked: list[bool] = field(default_factory=list)  # rows a reward term could not score: out of the update
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
                    use_reference_actor: bool = True, score_chunks: int = 1,
                    timeout_s: float = ROLE_TIMEOUT_S, submitted: Optional[threading.Event] = None) -> Rollout:
    """Generate, score and (with a reference actor) get reference log-probs for ``rows``.

    ``score_chunks``: generate calls per generation replica; each chunk is scored as soon as it
    is generated (1: every replica generates its whole share, then scoring starts).
    ``timeout_s``: the most seconds to wait for the generation of the whole batch, and then for
    its scores and reference log-probs (a :class:`StageError` naming the role after that).
    ``submitted``: set once every generate call is sent (asynchronous rollouts run this in a
    thread and wait for it, so a weight push sent afterwards lands after these calls).

    ``arrays`` also hold ``policy_version (B,)``, the pushed version each row was sampled with,
    and, when ``sampling["return_logprobs"]``, ``behavior_logprobs (B, C)`` (0 on padding).
    """
    import ray

    from fnsft.models.tokens import rollout_arrays
    from fnsft.rl.reward_terms import check_some_scored

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
    if submitted is not None:
        submitted.set()
    gen_parts: dict[int, dict] = {}
    score_refs: dict[int, list] = {}
    deadline = time.monotonic() + timeout_s
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
        if not done:
            raise role_timeout("generation", f"to generate {len(prompts)} completions", timeout_s)
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
    arrays["policy_version"] = np.asarray([gen_parts[i].get("version", 0) for i, (_, a, b) in enumerate(pieces)
                                           for _ in range(b - a)], np.int64)
    if sampling.get("return_logprobs"):
        arrays["behavior_logprobs"] = np.zeros(arrays["completion_ids"].shape, np.float32)
        lps = [x for i in range(len(pieces)) for x in gen_parts[i]["logprobs"]]
        for row, values in enumerate(lps):
            arrays["behavior_logprobs"][row, :len(values)] = values

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
        refs = [p for i in range(len(pieces)) for p in score_refs[i]]
        out = merge_scores(bounded_get(refs, "reward", f"to score {len(prompts)} completions", timeout_s))
        scores = np.asarray(out["rewards"], np.float32)
        components = out["components"]
        metrics = out["metrics"]
        masked = out["masked"]
        check_some_scored(masked, metrics, f"this batch of {len(prompts)}")
        spans += [("reward", *s) for s in out.get("spans", [])]
        if any(masked):
            # A row a term could not score (a failed judgement) has no reward at all, never 0:
            # it leaves every loss term.
            arrays["completion_mask"][np.asarray(masked, bool)] = 0
        timings["reward_s"] = time.perf_counter() - t0
        gen_spans = [s for s in spans if s[0] == "generation"]
        if gen_spans:  # scoring time hidden behind generation (0 with score_chunks 1 and one replica)
            g0, g1 = min(s[1] for s in gen_spans), max(s[2] for s in gen_spans)
            timings["score_overlap_s"] = sum(max(0.0, min(e, g1) - max(s, g0)) for r, s, e in spans if r == "reward")
    if use_reference_actor and roles.reference is not None:
        if ref_ref is not None:
            arrays["ref_logprobs"] = bounded_get(ref_ref, "reference", "for reference log-probs", timeout_s)
        else:  # contiguous shares as ActorGroup.split makes them, each wait bounded
            n, k = len(prompts), len(roles.reference)
            size, extra = divmod(n, k)
            starts = [i * size + min(i, extra) for i in range(k + 1)]
            refs = [actor.logprobs.remote({key: v[a:b] for key, v in arrays.items()}, reference_temperature)
                    for actor, a, b in zip(roles.reference.actors, starts, starts[1:]) if b > a]
            parts = bounded_get(refs, "reference", "for reference log-probs", timeout_s)
            arrays["ref_logprobs"] = np.stack([row for p in parts for row in p])
    # Reward and reference run side by side: their wall time together is the scoring time.
    timings["scoring_s"] = time.perf_counter() - t0
    arrays["scores"] = scores
    return Rollout(arrays=arrays, prompts=prompts, completions=gen["texts"], components=components,
                   truncated=gen["truncated"], timings=timings, metrics=metrics, masked=masked, spans=spans)


def role_timeout(role: str, what: str, timeout_s: float) -> StageError:
    """The one line for a role actor that did not answer in time."""
    return StageError(f"the {role} actors gave no answer {what} within {timeout_s:g}s (role_timeout_s); "
                      f"raise role_timeout_s if they are only slow, else see the {role} actor's log")


def bounded_get(refs, role: str, what: str, timeout_s: float):
    """``ray.get(refs)`` waiting at most ``timeout_s``; past it, :func:`role_timeout`'s StageError."""
    import ray

    try:
        return ray.get(refs, timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
        raise role_timeout(role, what, timeout_s) from None


def bounded_wait(refs: list, role: str, what: str, timeout_s: float) -> None:
    """Wait until every ref is ready (at most ``timeout_s``), without fetching them: a later
    ``ray.get`` (e.g. :meth:`~fnsft.actors.serving.WeightPusher.settle`) then returns at once."""
    import ray

    if refs:
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
        if len(ready) < len(refs):
            raise role_timeout(role, what, timeout_s)


def submit_scores(reward, prompts: list, texts: list[str], columns: dict[str, list],
                  completion_ids: list[list[int]]) -> list:
    """Start scoring on every replica of the ``reward`` group (``rl.reward.num_replicas``), each on
    a contiguous share; returns their ObjectRefs (in order) without waiting."""
    return [actor.score.remote(prompts[a:b], texts[a:b], {c: v[a:b] for c, v in columns.items()},
                               completion_ids[a:b])
            for actor, (a, b) in zip(reward.actors, chunk_bounds(len(prompts), len(reward.actors)))]


def reward_term_metrics(reward, timeout_s: float = ROLE_TIMEOUT_S) -> dict[str, float]:
    """The reward terms' books over everything the ``reward`` group scored (every replica's added
    up), as metrics (``judge/calls``...); ``{}`` without a reward group or books."""
    from fnsft.rl.reward_terms import add_stats, stats_metrics

    if reward is None:
        return {}
    return stats_metrics(add_stats(bounded_get([actor.term_totals.remote() for actor in reward.actors],
                                               "reward", "with the reward terms' totals", timeout_s)))


def merge_scores(parts: list[dict]) -> dict[str, Any]:
    """Join :meth:`RewardActor.score` answers for consecutive shares of a batch into one.

    ``seconds``: the slowest share's time per term; ``spans``: every share's; each term's books
    are added up from the raw stats every share returns, then read as metrics (counts sum; shares
    and means are over the whole batch).
    """
    from fnsft.rl.reward_terms import add_stats, stats_metrics

    if len(parts) == 1:
        out = dict(parts[0])
        out["spans"] = [out["span"]] if "span" in out else []
        return out
    stats = add_stats([p["stats"] for p in parts])
    return {"rewards": [x for p in parts for x in p["rewards"]],
            "components": {label: [x for p in parts for x in p["components"][label]] for label in parts[0]["components"]},
            "seconds": {label: max(p["seconds"][label] for p in parts) for label in parts[0]["seconds"]},
            "masked": [x for p in parts for x in p["masked"]],
            "stats": stats, "metrics": stats_metrics(stats),
            "spans": [p["span"] for p in parts if "span" in p]}
