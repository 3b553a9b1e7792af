"""KL between the policy and the reference model: estimators, reward shaping, coefficient control.

The RL stages keep the policy close to its starting point (the reference model) either by
subtracting a KL penalty from the reward (PPO, A2C, TRPO, RLOO: :func:`add_kl_to_rewards`) or
by adding it to the loss (GRPO: :func:`fnsft.rl.grpo_loss`). The coefficient is fixed or adapted
toward a target KL by a controller.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fnsft.errors import ConfigError
from fnsft.rl.masked import masked_mean

KL_KINDS = ("k1", "k2", "k3", "abs")

# k3 explodes as exp(ref - policy) when the policy gives a sampled token much less mass than
# the reference; a clamp keeps one outlier token from dominating the loss (as veRL does).
_K3_MAX = 10.0


def kl_penalty(logprobs: Tensor, ref_logprobs: Tensor, kind: str = "k1") -> Tensor:
    """Per-token estimate of KL(policy || reference) from the sampled tokens' log-probs.

    With ``log_ratio = logprobs - ref_logprobs`` (tokens sampled from the policy), following
    Schulman's "Approximating KL divergence" (YAML ``rl.kl_estimator``):

    - ``"k1"``: ``log_ratio`` — unbiased, high variance, can be negative per token.
    - ``"k2"``: ``0.5 * log_ratio**2`` — biased, low variance, always >= 0.
    - ``"k3"``: ``exp(-log_ratio) - 1 + log_ratio`` — unbiased, low variance, always >= 0
      (clamped at 10 for stability).
    - ``"abs"``: ``|log_ratio|``.
    """
    log_ratio = logprobs - ref_logprobs
    if kind == "k1":
        return log_ratio
    if kind == "k2":
        return 0.5 * log_ratio.square()
    if kind == "k3":
        return (torch.expm1(-log_ratio) + log_ratio).clamp(max=_K3_MAX)
    if kind == "abs":
        return log_ratio.abs()
    raise ConfigError(f"unknown KL estimator {kind!r}; expected one of {', '.join(KL_KINDS)}")


def kl_from_logits(ref_logits: Tensor, logits: Tensor, mask: Tensor) -> Tensor:
    """Exact KL(ref || current) over the full vocabulary, averaged over the masked tokens.

    ``ref_logits`` and ``logits`` are ``(B, T, V)``; ``ref_logits`` is usually the policy's own
    logits detached before an update. Its Hessian at ``logits == ref_logits`` is the Fisher
    matrix, which makes it the ``kl_fn`` for :func:`fnsft.rl.trpo_step`.
    """
    ref_logp = torch.log_softmax(ref_logits, dim=-1)
    logp = torch.log_softmax(logits, dim=-1)
    per_token = (ref_logp.exp() * (ref_logp - logp)).sum(dim=-1)
    return masked_mean(per_token, mask)


@torch.no_grad()
def add_kl_to_rewards(
    scores: Tensor,
    logprobs: Tensor,
    ref_logprobs: Tensor,
    mask: Tensor,
    kl_coef: float,
    kind: str = "k1",
) -> Tensor:
    """Per-token rewards: ``-kl_coef * KL_t`` on every response token, plus the score on the last.

    Args:
        scores: ``(B,)`` one reward-model / function score per sequence.
        logprobs, ref_logprobs: ``(B, T)`` log-probs of the sampled tokens under the policy
            (at generation time) and the reference model.
        mask: ``(B, T)`` 1 on response tokens.
        kl_coef: penalty weight, usually ``controller.value``.
        kind: KL estimator, see :func:`kl_penalty`.

    Returns:
        ``(B, T)`` rewards, 0 outside the mask; feed them to :func:`fnsft.rl.gae`. A sequence
        with no response token gets no score.
    """
    if scores.shape != mask.shape[:1]:
        raise ValueError(f"scores has shape {tuple(scores.shape)}, expected ({mask.shape[0]},)")
    mask = mask.to(logprobs.dtype)
    rewards = -kl_coef * kl_penalty(logprobs, ref_logprobs, kind) * mask
    valid = mask > 0
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = torch.where(valid, positions, torch.zeros_like(positions)).argmax(dim=1)
    has_any = valid.any(dim=1).to(rewards.dtype)
    rewards.scatter_add_(1, last.unsqueeze(1), (scores.to(rewards.dtype) * has_any).unsqueeze(1))
    return rewards


class FixedKLController:
    """A constant KL coefficient (YAML ``rl.kl_coef`` with ``rl.adaptive_kl: false``)."""

    def __init__(self, coef: float):
        self.value = float(coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        """No-op, so the loop can call ``update`` whichever controller it holds."""


class AdaptiveKLController:
    """Adapt the KL coefficient toward a target KL (Ziegler et al. 2019, "Fine-Tuning LMs from
    Human Preferences"; as in TRL's original PPO trainer).

    Each update multiplies the coefficient by ``1 + e * n_steps / horizon`` with the
    proportional error ``e = clip(current_kl / target - 1, -0.2, 0.2)``: too much KL raises the
    penalty, too little lowers it. YAML: ``rl.kl_coef`` (init), ``rl.kl_target``,
    ``rl.kl_horizon``.
    """

    def __init__(self, init_coef: float, target: float, horizon: float):
        if target <= 0 or horizon <= 0:
            raise ConfigError(f"adaptive KL needs rl.kl_target > 0 and rl.kl_horizon > 0, got {target}, {horizon}")
        self.value = float(init_coef)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        """``current_kl``: the measured mean KL per sequence; ``n_steps``: samples (sequences)
        seen since the last update."""
        current_kl = float(current_kl)
        if not math.isfinite(current_kl):
            return
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
