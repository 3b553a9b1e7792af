"""Off-policy correction for asynchronous rollouts (YAML ``rl.behavior_correction``).

With ``rl.async_rollout`` the generation actors sample a batch with policy version ``v`` while
the learner already holds version ``v + lag``; the sampler's numbers (another engine, another
precision, older weights) are the *behaviour* policy ``μ``. The learner's loss is built around
its own log-probs before the update (``π_old``, the PPO/GRPO ratio's denominator), so the
samples are weighted by the importance ratio between the two, as veRL's rollout IS and TRL's
``vllm_importance_sampling_*`` do::

    ρ_t = exp(log π_old(y_t) − log μ(y_t))                     (token level)
    ρ   = exp(Σ_t log π_old(y_t) − log μ(y_t))                  (sequence level, one per row)
    tis: w = min(ρ, cap)            truncated importance sampling (Ionides 2008; TRL, veRL)
    mis: w = ρ · 1[ρ ≤ cap]          masked: samples too far off-policy leave the gradient

The weight multiplies the per-token policy-gradient term. Since ``w ≥ 0`` and does not depend
on the parameters, ``w · max(−A·r, −A·clip(r))`` equals ``max(−(wA)·r, −(wA)·clip(r))``: the
correction is the advantages scaled by ``w`` (:func:`weight_advantages`), and every policy loss
of :mod:`fnsft.rl.loop` takes it unchanged. The KL, value and entropy terms are not weighted
(as in veRL). Pure functions over ``(B, T)`` tensors with a float ``mask``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from fnsft.rl.masked import masked_mean, masked_sum

CORRECTION_TYPES = ("none", "tis", "mis")
CORRECTION_LEVELS = ("token", "sequence")

# exp() of a summed sequence log-ratio overflows float32 past ~88; a weight that large is capped
# (tis) or masked (mis) anyway, so the log-ratio is clamped first to keep the stats finite.
_MAX_LOG_RATIO = 30.0


def importance_ratio(old_logprobs: Tensor, behavior_logprobs: Tensor, mask: Tensor,
                     level: Literal["token", "sequence"] = "token") -> Tensor:
    """``π_old / μ`` of the sampled tokens: ``(B, T)`` per token, or ``(B,)`` per sequence (the
    product over the row's response tokens). Masked positions have ratio 1 (token level)."""
    log_ratio = (old_logprobs - behavior_logprobs) * mask
    if level == "sequence":
        return torch.exp(masked_sum(log_ratio, mask, dim=-1).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO))
    if level != "token":
        raise ValueError(f"unknown importance-sampling level {level!r}; use one of {CORRECTION_LEVELS}")
    return torch.exp(log_ratio.clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO))


def correction_weights(ratio: Tensor, kind: Literal["none", "tis", "mis"], cap: float) -> Tensor:
    """The weights of ``kind`` from importance ratios: ``tis`` ``min(ρ, cap)``, ``mis``
    ``ρ`` where ``ρ ≤ cap`` else 0, ``none`` all ones."""
    if kind == "none":
        return torch.ones_like(ratio)
    if kind == "tis":
        return torch.clamp(ratio, max=cap)
    if kind == "mis":
        return ratio.masked_fill(ratio > cap, 0.0)
    raise ValueError(f"unknown behavior_correction type {kind!r}; use one of {CORRECTION_TYPES}")


def weight_advantages(advantages: Tensor, weights: Tensor, mask: Tensor) -> Tensor:
    """``advantages`` (``(B,)`` or ``(B, T)``) times ``weights`` (``(B,)`` or ``(B, T)``); the
    result is ``(B, T)`` as soon as either side is per token (the losses broadcast ``(B,)``)."""
    if advantages.dim() == weights.dim():
        return advantages * weights
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(-1).expand_as(mask)
    else:
        weights = weights.unsqueeze(-1).expand_as(mask)
    return advantages * weights


@torch.no_grad()
def behavior_correction(advantages: Tensor, old_logprobs: Tensor, behavior_logprobs: Tensor, mask: Tensor,
                        kind: Literal["none", "tis", "mis"] = "none", cap: float = 2.0,
                        level: Literal["token", "sequence"] = "token") -> tuple[Tensor, dict[str, float]]:
    """The corrected advantages and the batch's statistics (YAML ``rl.behavior_correction``).

    Stats (measured whatever ``kind``, so an uncorrected run still shows how far off-policy it
    is): ``rollout/is_ratio_mean`` / ``_max`` (over response tokens, or rows at sequence level),
    ``rollout/is_clipped_share`` (share of ratios above ``cap``: truncated by tis, masked by mis,
    would be by either under none), ``rollout/logprob_diff_mean`` / ``_max``
    (``|log π_old − log μ|`` over response tokens).
    """
    mask = mask.to(old_logprobs.dtype)
    ratio = importance_ratio(old_logprobs, behavior_logprobs, mask, level)
    over = (ratio > cap).to(mask.dtype)
    if level == "sequence":
        rows = (mask.sum(-1) > 0).to(mask.dtype)
        n = rows.sum().clamp(min=1)
        ratio_mean, ratio_max = float((ratio * rows).sum() / n), float((ratio * rows).max()) if len(rows) else 1.0
        clipped = float((over * rows).sum() / n)
    else:
        ratio_mean = float(masked_mean(ratio, mask))
        ratio_max = float(ratio.masked_fill(mask == 0, 0).max()) if mask.any() else 1.0
        clipped = float(masked_mean(over, mask))
    diff = (old_logprobs - behavior_logprobs).abs()
    stats = {"rollout/is_ratio_mean": ratio_mean, "rollout/is_ratio_max": ratio_max,
             "rollout/is_clipped_share": clipped,
             "rollout/logprob_diff_mean": float(masked_mean(diff, mask)),
             "rollout/logprob_diff_max": float(diff.masked_fill(mask == 0, 0).max()) if mask.any() else 0.0}
    if kind == "none":
        return advantages, stats
    weights = correction_weights(ratio, kind, cap)
    if level == "token":
        weights = weights * mask + (1 - mask)  # padding keeps weight 1 (its mask zeroes it anyway)
    return weight_advantages(advantages, weights, mask), stats


def staleness_counts(versions, learner_version: int, max_staleness: int) -> dict[str, float]:
    """Per-iteration histogram of how many versions each sample lags the learner:
    ``rollout/staleness_<lag>`` for every lag ``0..max_staleness`` (zeros kept, so every
    iteration has the same keys), plus ``rollout/staleness_mean`` and ``rollout/staleness_max``.
    A lag above ``max_staleness`` gets its own key (the bound was broken: tests assert on it)."""
    lags = [learner_version - int(v) for v in versions]
    out: dict[str, float] = {f"rollout/staleness_{k}": 0.0 for k in range(max_staleness + 1)}
    for lag in lags:
        out[f"rollout/staleness_{lag}"] = out.get(f"rollout/staleness_{lag}", 0.0) + 1.0
    out["rollout/staleness_mean"] = sum(lags) / len(lags) if lags else 0.0
    out["rollout/staleness_max"] = float(max(lags)) if lags else 0.0
    return out
