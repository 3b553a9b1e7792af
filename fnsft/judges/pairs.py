"""Preference pairs labelled by a judge (RLAIF ``mode: reward_model``: the reward model's data).

:func:`label_pairs` takes ``group`` consecutive completions per prompt and returns
``{"prompt", "chosen", "rejected", ...}`` rows (the DPO stage's ``preference_dataset_path`` format):

- a ``pairwise`` judge compares completions two by two (1st vs 2nd, 3rd vs 4th, ...) with the
  judge's ``position_debias`` (both orders by default); ``p_chosen_better`` is its preference;
- a ``pointwise``/``binary`` judge scores every completion; the best and the worst of a prompt
  form the pair (:func:`fnsft.rl.preference.preference_pairs`), with ``score_chosen``/``score_rejected``.

Everything goes through :class:`~fnsft.judges.base.Judge` (cache, budget, books). A masked
judgement, a tie, or two identical completions make no pair — never a guess.
"""

from __future__ import annotations

from typing import Sequence


def label_pairs(judge, prompts: Sequence, completions: Sequence[str], group: int) -> list[dict]:
    """Pairs from ``group`` consecutive completions per prompt (see the module docstring)."""
    if len(prompts) % group:
        raise ValueError(f"{len(prompts)} completions do not split into groups of {group}")
    if judge.kind == "pairwise":
        return _pairwise(judge, prompts, completions, group)
    from fnsft.rl.preference import preference_pairs

    scores = judge.pointwise(prompts, completions)
    valid = [s is not None for s in scores]
    filled = [s if s is not None else 0.0 for s in scores]  # invalid rows are never picked
    return [{"prompt": prompts[w], "chosen": completions[w], "rejected": completions[l],
             "score_chosen": scores[w], "score_rejected": scores[l]}
            for w, l in preference_pairs(filled, valid, group) if completions[w] != completions[l]]


def _pairwise(judge, prompts: Sequence, completions: Sequence[str], group: int) -> list[dict]:
    idx = [(s + k, s + k + 1) for s in range(0, len(prompts), group) for k in range(0, group - 1, 2)]
    idx = [(a, b) for a, b in idx if completions[a] != completions[b]]
    prefs = judge.pairwise([prompts[a] for a, _ in idx], [completions[a] for a, _ in idx],
                           [completions[b] for _, b in idx])
    out = []
    for (a, b), p in zip(idx, prefs):
        if p is None or abs(p - 0.5) < 1e-6:
            continue
        w, l = (a, b) if p > 0.5 else (b, a)
        out.append({"prompt": prompts[a], "chosen": completions[w], "rejected": completions[l],
                    "p_chosen_better": max(p, 1.0 - p)})
    return out
