"""The GRPO family's math (2025): DAPO, Dr. GRPO, GSPO, CISPO, REINFORCE++ — pure functions over tensors.

One clipped loss covers DAPO, Dr. GRPO, GSPO and REINFORCE++; they differ in its knobs
(:class:`fnsft.rl.knobs.AlgoKnobs`): the clip range ``[1 - epsilon, 1 + epsilon_high]``
(DAPO's *clip-higher*), the ratio's level (``token`` or GSPO's length-normalised ``sequence``
ratio) and how per-token losses are aggregated (:func:`aggregate_loss`: ``token_mean`` for DAPO,
``seq_mean_token_sum`` for Dr. GRPO). CISPO (:func:`cispo_loss`) instead clips the importance
weight itself, stops its gradient and multiplies the log-prob, so no token's gradient is dropped.
Advantages: :func:`scaled_group_advantages` (group mean, scaled by the ``group``/``batch`` std or
not at all) and :func:`reinforce_pp_advantages` (REINFORCE++: returns whitened over the batch).
DAPO's reward-side pieces: :func:`overlong_penalty` and :func:`constant_groups` (dynamic sampling).

Token-level inputs are ``(B, T)`` with a float ``mask`` as everywhere in :mod:`fnsft.rl`; every
loss returns ``(loss, stats)`` with detached 0-dim stats.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fnsft.errors import ConfigError
from fnsft.rl.advantages import discounted_returns, group_advantages
from fnsft.rl.kl import add_kl_to_rewards, kl_penalty
from fnsft.rl.masked import masked_mean, masked_sum, masked_whiten


def _token_advantages(advantages: Tensor, mask: Tensor) -> Tensor:
    return (advantages.unsqueeze(-1) if advantages.dim() == 1 else advantages).expand_as(mask)


def aggregate_loss(per_token: Tensor, mask: Tensor, mode: str, max_new_tokens: int = 1) -> Tensor:
    """One loss from per-token losses (veRL's ``loss_agg_mode``; YAML ``rl.loss_agg_mode``).

    - ``token_mean``: mean over every response token of the batch (DAPO): a long answer's tokens
      weigh as much as a short one's.
    - ``seq_mean_token_mean``: each sequence's token mean, then the mean over sequences (GRPO's
      paper, GSPO): every sequence weighs the same, so long answers' tokens weigh less.
    - ``seq_mean_token_sum``: each sequence's token *sum* divided by the constant
      ``max_new_tokens``, then the mean over sequences (Dr. GRPO; TRL's ``dr_grpo``): no length
      normalisation, and the constant keeps the learning rate's scale.

    Sequence means run over the sequences with a token in the loss (a row masked out entirely —
    a failed reward, a dynamic-sampling filler — does not dilute the others).
    """
    if mode == "token_mean":
        return masked_mean(per_token, mask)
    rows = (mask.sum(dim=-1) > 0).to(per_token.dtype)
    if mode == "seq_mean_token_mean":
        per_seq = masked_mean(per_token, mask, dim=-1)
    elif mode == "seq_mean_token_sum":
        per_seq = masked_sum(per_token, mask, dim=-1) / max_new_tokens
    else:
        raise ConfigError(f"unknown rl.loss_agg_mode {mode!r}; expected token_mean, seq_mean_token_sum "
                          "or seq_mean_token_mean")
    return (per_seq * rows).sum() / rows.sum().clamp_min(1.0)


def _kl_term(per_token: Tensor, logprobs: Tensor, ref_logprobs, kl_coef: float, mask: Tensor, stats: dict) -> Tensor:
    if ref_logprobs is None:
        if kl_coef:
            raise ValueError("kl_coef > 0 needs ref_logprobs")
        return per_token
    kl = kl_penalty(logprobs, ref_logprobs, kind="k3")
    stats["kl_loss"] = masked_mean(kl.detach(), mask)
    return per_token + kl_coef * kl


def clipped_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    epsilon: float,
    epsilon_high: float,
    level: str = "token",
    agg: str = "token_mean",
    max_new_tokens: int = 1,
    ref_logprobs: Tensor | None = None,
    kl_coef: float = 0.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """The family's clipped surrogate: DAPO, Dr. GRPO, GSPO, REINFORCE++.

    Per token ``max(-A * w, -A * clip(w, 1 - epsilon, 1 + epsilon_high))`` (+ ``kl_coef`` times
    the k3 KL to the reference), aggregated by :func:`aggregate_loss` (``agg``). The weight ``w``:

    - ``level="token"``: ``w_t = exp(logprobs_t - old_logprobs_t)`` (PPO; DAPO's decoupled clip);
    - ``level="sequence"``: GSPO's ``s_i = exp(mean_t(logprobs - old_logprobs))`` over the
      sequence's tokens, one ratio (and one clipping decision) for every token of the sequence.

    ``advantages``: ``(B,)`` per sequence or ``(B, T)`` per token (REINFORCE++).

    Stats: ``clip_fraction`` (tokens where the clipped term won), ``clip_fraction_low``
    (``w < 1 - epsilon`` with ``A < 0``), ``clip_fraction_high`` (``w > 1 + epsilon_high`` with
    ``A > 0``), ``approx_kl`` (k3 of the token ratios), ``ratio_mean`` (token ratios); with
    ``level="sequence"`` also ``seq_ratio_mean`` and ``seq_ratio_max`` (GSPO's ``s_i``); with a
    reference ``kl_loss``.
    """
    adv = _token_advantages(advantages, mask).detach()
    log_ratio = logprobs - old_logprobs
    stats: dict[str, Tensor] = {}
    if level == "sequence":
        seq_log_ratio = masked_mean(log_ratio, mask, dim=-1)  # (B,): length-normalised
        weight = torch.exp(seq_log_ratio).unsqueeze(-1).expand_as(mask)
        with torch.no_grad():
            rows = mask.sum(dim=-1) > 0
            s = torch.exp(seq_log_ratio.detach())[rows]
            stats["seq_ratio_mean"] = s.mean() if s.numel() else torch.tensor(1.0)
            stats["seq_ratio_max"] = s.max() if s.numel() else torch.tensor(1.0)
    elif level == "token":
        weight = torch.exp(log_ratio)
    else:
        raise ConfigError(f"unknown rl.importance_sampling_level {level!r}; expected token or sequence")
    unclipped = -adv * weight
    clipped = -adv * torch.clamp(weight, 1.0 - epsilon, 1.0 + epsilon_high)
    per_token = torch.maximum(unclipped, clipped)
    per_token = _kl_term(per_token, logprobs, ref_logprobs, kl_coef, mask, stats)
    loss = aggregate_loss(per_token, mask, agg, max_new_tokens)
    with torch.no_grad():
        w = weight.detach()
        f = mask.dtype
        stats["clip_fraction"] = masked_mean((clipped > unclipped).to(f), mask)
        stats["clip_fraction_low"] = masked_mean(((w < 1.0 - epsilon) & (adv < 0)).to(f), mask)
        stats["clip_fraction_high"] = masked_mean(((w > 1.0 + epsilon_high) & (adv > 0)).to(f), mask)
        lr = log_ratio.detach()
        stats["approx_kl"] = masked_mean(torch.expm1(lr) - lr, mask)
        stats["ratio_mean"] = masked_mean(torch.exp(lr), mask)
    return loss, stats


def cispo_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    epsilon_high: float,
    agg: str = "token_mean",
    max_new_tokens: int = 1,
    ref_logprobs: Tensor | None = None,
    kl_coef: float = 0.0,
) -> tuple[Tensor, dict[str, Tensor]]:
    """CISPO (MiniMax-M1, Chen et al. 2025): clipped importance-sampling weights, REINFORCE gradient.

    Per token ``-sg(min(r_t, 1 + epsilon_high)) * A * logprobs_t`` with
    ``r_t = exp(logprobs_t - old_logprobs_t)`` and ``sg`` the stop-gradient: the weight is capped
    but, unlike PPO's clip, no token's gradient is ever zeroed. No lower bound, as in the paper.
    At ``r = 1`` the gradient equals the vanilla policy gradient's.

    Stats: ``is_clip_share`` (tokens whose weight hit the cap), ``is_weight_mean`` (the capped
    weights), ``approx_kl``, ``ratio_mean``; with a reference ``kl_loss``.
    """
    adv = _token_advantages(advantages, mask).detach()
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio.detach())
    cap = 1.0 + epsilon_high
    weight = torch.clamp(ratio, max=cap)
    per_token = -weight * adv * logprobs
    stats: dict[str, Tensor] = {}
    per_token = _kl_term(per_token, logprobs, ref_logprobs, kl_coef, mask, stats)
    loss = aggregate_loss(per_token, mask, agg, max_new_tokens)
    with torch.no_grad():
        lr = log_ratio.detach()
        stats["is_clip_share"] = masked_mean((ratio > cap).to(mask.dtype), mask)
        stats["is_weight_mean"] = masked_mean(weight, mask)
        stats["approx_kl"] = masked_mean(torch.expm1(lr) - lr, mask)
        stats["ratio_mean"] = masked_mean(ratio, mask)
    return loss, stats


@torch.no_grad()
def scaled_group_advantages(rewards: Tensor, num_generations: int, scale: str = "group", eps: float = 1e-4) -> Tensor:
    """Group advantages ``r - mean(group)``, divided by the std of the ``group`` (GRPO), of the whole
    ``batch`` (PPO-Lite, TRL's ``scale_rewards: batch``) or by nothing (``none``: Dr. GRPO).

    ``rewards`` ``(B,)`` grouped as in :func:`fnsft.rl.group_advantages`; returns ``(B,)``.
    """
    if scale == "group":
        return group_advantages(rewards, num_generations, normalize_std=True, eps=eps)
    centred = group_advantages(rewards, num_generations, normalize_std=False)
    if scale == "none":
        return centred
    if scale == "batch":
        std = rewards.std() if rewards.numel() > 1 else torch.zeros(())
        return centred / (std + eps)
    raise ConfigError(f"unknown rl.scale_rewards {scale!r}; expected group, batch or none")


@torch.no_grad()
def reinforce_pp_advantages(
    scores: Tensor,
    mask: Tensor,
    logprobs: Tensor | None,
    ref_logprobs: Tensor | None,
    kl_coef: float,
    kl_estimator: str = "k1",
    gamma: float = 1.0,
    num_generations: int | None = None,
) -> tuple[Tensor, Tensor]:
    """REINFORCE++ (Hu 2025, OpenRLHF's ``reinforce`` / ``reinforce_baseline`` estimators).

    Per-token rewards are the score on the last token minus ``kl_coef`` times the KL to the
    reference on every token (:func:`fnsft.rl.add_kl_to_rewards`; no reference: the score
    alone); their discounted returns-to-go ``G_t`` are whitened over every response token of
    the batch — the *global batch baseline*. With ``num_generations`` (``reinforce_pp_baseline``)
    each score first has its group's mean subtracted.

    Returns ``(advantages (B, T), token_rewards (B, T))``.
    """
    if num_generations is not None:  # the group mean: group_advantages without the std
        scores = group_advantages(scores, num_generations, normalize_std=False)
    use_kl = ref_logprobs is not None and logprobs is not None and kl_coef > 0
    base = logprobs if logprobs is not None else torch.zeros_like(mask, dtype=scores.dtype)
    token_rewards = add_kl_to_rewards(scores, base, ref_logprobs if use_kl else base, mask,
                                      kl_coef if use_kl else 0.0, kind=kl_estimator)
    returns = discounted_returns(token_rewards, mask, gamma)
    return masked_whiten(returns, mask), token_rewards


@torch.no_grad()
def overlong_penalty(lengths: Tensor, max_new_tokens: int, buffer: int, factor: float = 1.0) -> Tensor:
    """DAPO's soft overlong punishment ``(B,)``, added to each completion's reward.

    0 up to ``max_new_tokens - buffer`` tokens, then falling linearly to ``-factor`` at
    ``max_new_tokens``: ``factor * min(0, (max_new_tokens - buffer - length) / buffer)``.
    ``buffer = 0`` turns it off.
    """
    if buffer <= 0:
        return torch.zeros_like(lengths, dtype=torch.float32)
    expected = max_new_tokens - buffer
    return factor * torch.clamp((expected - lengths.float()) / buffer, max=0.0)


def constant_groups(scores, num_generations: int):
    """``(B / num_generations,)`` numpy booleans: True for a group whose rewards are all equal.

    Such a group has zero advantage for every member under any group baseline, so it carries no
    gradient (DAPO's dynamic sampling drops it and samples other prompts).
    """
    import numpy as np

    groups = np.asarray(scores, dtype=np.float64).reshape(-1, num_generations)
    return np.ptp(groups, axis=1) <= 1e-6
