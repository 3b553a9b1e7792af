"""Rank 0's last word on a rollout before the update: truncated completions out, DAPO's dynamic sampling.

- ``mask_truncated_completions`` (TRL's key): a completion cut at ``max_new_tokens`` has no
  ending to judge, so its tokens leave the loss (its completion mask is zeroed).
- ``dynamic_sampling`` (DAPO, Yu et al. 2025): a group whose completions all got the same reward
  has zero advantage everywhere — it only dilutes the batch. Such groups are dropped and the
  batch refilled with groups of fresh prompts, sampled in up to ``max_resample`` extra rollouts
  (each asks only for the prompts still missing). If the budget runs out, the batch keeps its
  shape with dropped groups as fillers whose completion masks are zeroed, so every rank and
  minibatch still gets rows but no filler reaches the loss. The counts go into the iteration's
  metrics (``dynamic_sampling/dropped_groups``, ``/resample_rounds``, ``/filler_groups``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np

from fnsft.rl.grpo_family import constant_groups
from fnsft.rl.knobs import AlgoKnobs


def filter_rollout(rollout, knobs: AlgoKnobs, num_generations: int, pad_id: int,
                   collect_more: Callable[[int, int], object]) -> tuple[object, dict[str, float]]:
    """``(rollout, stats)`` after the filters ``knobs`` asks for.

    ``collect_more(n_prompts, round)`` returns a fresh :class:`~fnsft.actors.rollout.Rollout` of
    ``n_prompts`` new prompts (``num_generations`` completions each); it is only called for
    dynamic sampling.
    """
    stats: dict[str, float] = {}
    rollout = _mask_truncated(rollout, knobs, stats)
    if not knobs.dynamic_sampling:
        return rollout, stats
    g = num_generations
    need = len(rollout) // g
    const = constant_groups(rollout.arrays["scores"], g)
    parts = [(rollout, const)]
    kept, dropped, rounds = int((~const).sum()), int(const.sum()), 0
    while kept < need and rounds < knobs.max_resample:
        rounds += 1
        extra = _mask_truncated(collect_more(need - kept, rounds), knobs, stats)
        c = constant_groups(extra.arrays["scores"], g)
        parts.append((extra, c))
        kept += int((~c).sum())
        dropped += int(c.sum())
    chosen, fillers = [], []
    for i, (r, c) in enumerate(parts):
        chosen += [(i, grp) for grp in np.flatnonzero(~c)]
    chosen = chosen[:need]
    if len(chosen) < need:  # out of budget: fillers keep the batch's shape, outside the loss
        fillers = [(0, grp) for grp in np.flatnonzero(const)][:need - len(chosen)]
    merged = concat_rollouts([select_rows(parts[i][0], _rows(grp, g), zero_mask=False) for i, grp in chosen]
                             + [select_rows(parts[i][0], _rows(grp, g), zero_mask=True) for i, grp in fillers],
                             pad_id)
    stats.update({"dynamic_sampling/dropped_groups": float(dropped), "dynamic_sampling/resample_rounds": float(rounds),
                  "dynamic_sampling/filler_groups": float(len(fillers))})
    return merged, stats


def _rows(group: int, g: int) -> np.ndarray:
    return np.arange(group * g, (group + 1) * g)


def _mask_truncated(rollout, knobs: AlgoKnobs, stats: dict):
    if knobs.mask_truncated_completions and any(rollout.truncated):
        rollout.arrays["completion_mask"][np.asarray(rollout.truncated, bool)] = 0
        stats["truncated_masked"] = stats.get("truncated_masked", 0.0) + float(sum(rollout.truncated))
    return rollout


def select_rows(rollout, rows: np.ndarray, zero_mask: bool = False):
    """The rollout's ``rows`` (a new Rollout; ``zero_mask``: their completions leave the loss)."""
    arrays = {k: np.array(v[rows]) for k, v in rollout.arrays.items()}
    if zero_mask:
        arrays["completion_mask"][:] = 0
    pick = lambda xs: [xs[i] for i in rows] if xs else []  # noqa: E731
    return replace(rollout, arrays=arrays, prompts=pick(rollout.prompts), completions=pick(rollout.completions),
                   components={k: pick(v) for k, v in rollout.components.items()},
                   truncated=pick(rollout.truncated), masked=pick(rollout.masked))


def concat_rollouts(parts: list, pad_id: int):
    """One rollout of ``parts`` in order: arrays re-padded to the widest (prompts on the left,
    completions on the right), timings added up (every generation and scoring call was paid)."""
    first = parts[0]
    if len(parts) == 1:
        return first
    arrays = {}
    for key in first.arrays:
        values = [p.arrays[key] for p in parts]
        if values[0].ndim == 1:
            arrays[key] = np.concatenate(values)
            continue
        width = max(v.shape[1] for v in values)
        fill = pad_id if key.endswith("_ids") else 0
        side = "left" if key.startswith("prompt_") else "right"
        padded = [np.pad(v, ((0, 0), (width - v.shape[1], 0) if side == "left" else (0, width - v.shape[1])),
                         constant_values=fill) for v in values]
        arrays[key] = np.concatenate(padded)
    timings: dict[str, float] = {}
    for p in {id(p.timings): p for p in parts}.values():  # rows of one rollout share its timings: count them once
        for k, v in p.timings.items():
            timings[k] = timings.get(k, 0.0) + v
    join = lambda name: [x for p in parts for x in getattr(p, name)]  # noqa: E731
    return replace(first, arrays=arrays, prompts=join("prompts"), completions=join("completions"),
                   components={k: [x for p in parts for x in p.components.get(k, [])] for k in first.components},
                   truncated=join("truncated"), masked=join("masked"), timings=timings,
                   spans=[s for p in {id(p.timings): p for p in parts}.values() for s in p.spans])
