"""Policy and value losses, one per update rule.

Every ``*_loss`` returns ``(loss, stats)``: ``loss`` is a scalar to ``backward()``, ``stats`` a
dict of detached 0-dim tensors to log (call ``.item()``) or all-reduce. Token-level inputs are
``(B, T)`` with a float ``mask`` (1 on response tokens); losses average over the masked tokens
of the whole batch, so every token weighs the same.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fnsft.errors import ConfigError
from fnsft.rl.kl import kl_penalty
from fnsft.rl.masked import masked_mean


def _token_advantages(advantages: Tensor, mask: Tensor) -> Tensor:
    """Broadcast per-sequence ``(B,)`` advantages over tokens; pass ``(B, T)`` through."""
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(-1)
    return advantages.expand_as(mask)


def _clipped_surrogate(
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, clip_range: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-token ``max(-A * r, -A * clip(r))``, plus ratio, log-ratio and where clipping won."""
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    return torch.maximum(unclipped, clipped), ratio, log_ratio, clipped > unclipped


def _surrogate_stats(ratio: Tensor, log_ratio: Tensor, was_clipped: Tensor, mask: Tensor) -> dict[str, Tensor]:
    with torch.no_grad():
        return {
            "clip_fraction": masked_mean(was_clipped.to(mask.dtype), mask),
            # k3 estimator of KL(old || new) = E_old[(r - 1) - log r]: unbiased and >= 0.
            "approx_kl": masked_mean((ratio - 1.0) - log_ratio, mask),
            "ratio_mean": masked_mean(ratio, mask),
        }


def ppo_policy_loss(
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, clip_range: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO's clipped surrogate (Schulman et al. 2017).

    ``loss = mean_t max(-A_t * r_t, -A_t * clip(r_t, 1 - eps, 1 + eps))`` with
    ``r_t = exp(logprobs - old_logprobs)`` and ``eps = clip_range`` (YAML ``rl.clip_range``).
    ``advantages`` may be ``(B, T)`` or ``(B,)`` (broadcast over tokens).

    Stats:
        ``clip_fraction``: share of tokens where the clipped term was chosen (no gradient).
        ``approx_kl``: k3 estimate of KL(old || new), ``mean((r - 1) - log r)``.
        ``ratio_mean``: mean ratio (1.0 on the first minibatch of an iteration).
    """
    per_token, ratio, log_ratio, was_clipped = _clipped_surrogate(
        logprobs, old_logprobs, _token_advantages(advantages, mask), clip_range
    )
    return masked_mean(per_token, mask), _surrogate_stats(ratio, log_ratio, was_clipped, mask)


def value_loss(
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    mask: Tensor,
    clip_range_value: float | None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Critic regression ``0.5 * mean((V - returns)^2)``, with PPO's value clipping.

    With ``clip_range_value`` (YAML ``rl.clip_range_value``) the new value may move at most
    that far from ``old_values`` before the error stops improving:
    ``0.5 * mean(max((V - R)^2, (old_V + clip(V - old_V, -c, c) - R)^2))``. ``None`` disables it.

    Stats: ``value_clip_fraction`` (share of tokens where the clipped error was larger),
    ``value_mean``.
    """
    unclipped = (values - returns).square()
    if clip_range_value is None:
        per_token = unclipped
        was_clipped = torch.zeros_like(unclipped, dtype=torch.bool)
    else:
        v_clipped = old_values + torch.clamp(values - old_values, -clip_range_value, clip_range_value)
        clipped = (v_clipped - returns).square()
        per_token = torch.maximum(unclipped, clipped)
        was_clipped = clipped > unclipped
    loss = 0.5 * masked_mean(per_token, mask)
    with torch.no_grad():
        stats = {
            "value_clip_fraction": masked_mean(was_clipped.to(mask.dtype), mask),
            "value_mean": masked_mean(values, mask),
        }
    return loss, stats


def a2c_policy_loss(logprobs: Tensor, advantages: Tensor, mask: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Vanilla policy gradient (A2C, and RLOO/REINFORCE with their baselines).

    ``loss = -mean_t(logprob_t * A_t)``: no ratio and no clipping, so it is only correct for
    one update on freshly sampled data. ``advantages`` may be ``(B, T)`` or ``(B,)``.
    Stats: ``advantage_mean``.
    """
    adv = _token_advantages(advantages, mask).detach()
    loss = -masked_mean(logprobs * adv, mask)
    with torch.no_grad():
        stats = {"advantage_mean": masked_mean(adv, mask)}
    return loss, stats


def trpo_surrogate_loss(
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor
) -> tuple[Tensor, dict[str, Tensor]]:
    """TRPO's unclipped importance-weighted surrogate ``-mean(r_t * A_t)``.

    Its gradient at ``logprobs == old_logprobs`` equals the policy gradient; use it inside the
    ``loss_fn`` closure of :func:`fnsft.rl.trpo_step` (the trust region replaces clipping).
    Stats as in :func:`ppo_policy_loss` (``clip_fraction`` is always 0).
    """
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    loss = -masked_mean(ratio * _token_advantages(advantages, mask), mask)
    return loss, _surrogate_stats(ratio, log_ratio, torch.zeros_like(mask, dtype=torch.bool), mask)


def entropy_from_logits(logits: Tensor, mask: Tensor) -> Tensor:
    """Mean per-token entropy of the policy over the masked tokens.

    ``logits`` is ``(B, T, V)``. Uses ``H = logsumexp(z) - sum(softmax(z) * z)``, which stays
    finite for very negative logits. Subtract ``coef * entropy`` from the loss as a bonus
    (YAML ``rl.entropy_coef``).
    """
    log_z = torch.logsumexp(logits, dim=-1)
    probs = torch.softmax(logits, dim=-1)
    entropy = log_z - (probs * logits).sum(dim=-1)
    return masked_mean(entropy, mask)


def grpo_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_range: float,
    ref_logprobs: Tensor | None = None,
    kl_coef: float = 0.0,
    loss_agg: str = "token",
) -> tuple[Tensor, dict[str, Tensor]]:
    """GRPO's loss (Shao et al. 2024): clipped surrogate + KL to the reference inside the loss.

    Args:
        logprobs, old_logprobs: ``(B, T)`` sampled tokens' log-probs now / at generation.
        advantages: ``(B,)`` sequence advantages from :func:`fnsft.rl.group_advantages`,
            broadcast over each sequence's tokens.
        mask: ``(B, T)`` 1 on response tokens.
        clip_range: PPO clip epsilon (YAML ``rl.clip_range``).
        ref_logprobs: ``(B, T)`` reference model log-probs; needed when ``kl_coef > 0``.
        kl_coef: weight of the per-token k3 KL(policy || reference) (YAML ``rl.kl_coef``).
        loss_agg: ``"token"`` averages over all response tokens of the batch (DAPO; long
            answers are not down-weighted); ``"sequence"`` averages each sequence, then the
            batch (the original paper).

    Stats: those of :func:`ppo_policy_loss` plus, with a reference, ``kl_loss`` (mean per-token
    k3 KL to the reference inside the loss). Not ``kl``: that key is the per-sequence k1 KL the
    trainer logs and the adaptive controller compares with ``kl_target``.
    """
    per_token, ratio, log_ratio, was_clipped = _clipped_surrogate(
        logprobs, old_logprobs, _token_advantages(advantages, mask), clip_range
    )
    if ref_logprobs is not None:
        kl = kl_penalty(logprobs, ref_logprobs, kind="k3")
        per_token = per_token + kl_coef * kl
    elif kl_coef:
        raise ValueError("grpo_loss: kl_coef > 0 needs ref_logprobs")
    else:
        kl = torch.zeros_like(per_token)
    if loss_agg == "token":
        loss = masked_mean(per_token, mask)
    elif loss_agg == "sequence":
        loss = masked_mean(per_token, mask, dim=-1).mean()
    else:
        raise ConfigError(f"unknown rl.loss_agg {loss_agg!r}; expected 'token' or 'sequence'")
    stats = _surrogate_stats(ratio, log_ratio, was_clipped, mask)
    if ref_logprobs is not None:
        stats["kl_loss"] = masked_mean(kl.detach(), mask)
    return loss, stats
