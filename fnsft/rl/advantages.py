"""Advantage estimators: how much better an action was than expected.

- :func:`gae` and :func:`discounted_returns` work per token and need a critic's values
  (PPO, A2C, TRPO).
- :func:`group_advantages` (GRPO) and :func:`rloo_advantages` (RLOO) work per sequence and use
  the other completions of the same prompt as the baseline, so no critic is needed.

Advantages are targets, not something to differentiate through: every function here returns
tensors without autograd history.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fnsft.errors import ConfigError


def _check_token_shapes(mask: Tensor, **tensors: Tensor) -> None:
    for name, t in tensors.items():
        if t.shape != mask.shape:
            raise ValueError(f"{name} has shape {tuple(t.shape)}, expected mask's {tuple(mask.shape)}")


@torch.no_grad()
def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    """Generalised Advantage Estimation (Schulman et al. 2016) over the response tokens.

    Args:
        rewards: ``(B, T)`` per-token rewards — usually 0 except the sequence score on the last
            response token, minus per-token KL penalties (see :func:`fnsft.rl.add_kl_to_rewards`).
        values: ``(B, T)`` critic values V(s_t) at each token.
        mask: ``(B, T)`` 1 on response tokens. Masked-out positions are skipped: the
            recursion passes through them unchanged, so the value after the last valid token
            bootstraps as 0 and gaps inside a response (e.g. tool output) are ignored.
        gamma: discount (YAML ``rl.gamma``; 1.0 is usual for LLMs).
        lam: GAE lambda (YAML ``rl.lam``). ``lam=1`` gives Monte Carlo returns minus the value,
            ``lam=0`` the one-step TD error.

    Returns:
        ``(advantages, returns)``, both ``(B, T)`` and 0 outside the mask;
        ``returns = advantages + values`` are the critic's regression targets.

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` and ``A_t = delta_t + gamma * lam * A_{t+1}``,
    where ``t+1`` is the next *valid* token.
    """
    _check_token_shapes(mask, rewards=rewards, values=values)
    mask = mask.to(values.dtype)
    next_value = torch.zeros_like(values[:, 0])
    next_adv = torch.zeros_like(values[:, 0])
    advantages = torch.zeros_like(values)
    for t in reversed(range(values.shape[1])):
        m = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv_t = delta + gamma * lam * next_adv
        # On masked positions carry the recursion through untouched.
        next_adv = m * adv_t + (1 - m) * next_adv
        next_value = m * values[:, t] + (1 - m) * next_value
        advantages[:, t] = adv_t
    advantages = advantages * mask
    returns = (advantages + values) * mask
    return advantages, returns


@torch.no_grad()
def discounted_returns(rewards: Tensor, mask: Tensor, gamma: float) -> Tensor:
    """Monte Carlo discounted returns ``G_t = r_t + gamma * G_{t+1}`` over the response tokens.

    For A2C with Monte Carlo returns: ``advantage = G - values``. (Equivalent to
    ``gae(..., lam=1.0)``'s returns.) Masked positions are skipped like in :func:`gae`; the
    result is 0 outside the mask.
    """
    _check_token_shapes(mask, rewards=rewards)
    mask = mask.to(rewards.dtype)
    next_return = torch.zeros_like(rewards[:, 0])
    returns = torch.zeros_like(rewards)
    for t in reversed(range(rewards.shape[1])):
        m = mask[:, t]
        g = rewards[:, t] + gamma * next_return
        next_return = m * g + (1 - m) * next_return
        returns[:, t] = g
    return returns * mask


def _grouped(rewards: Tensor, num_generations: int) -> Tensor:
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D (one score per completion), got shape {tuple(rewards.shape)}")
    if num_generations < 2:
        raise ConfigError(
            f"rl.num_generations must be >= 2 for a group baseline (GRPO/RLOO), got {num_generations}"
        )
    if rewards.numel() % num_generations:
        raise ConfigError(
            f"batch of {rewards.numel()} completions does not split into groups of "
            f"rl.num_generations={num_generations}; make the batch a multiple of it"
        )
    return rewards.view(-1, num_generations)


@torch.no_grad()
def group_advantages(
    rewards: Tensor, num_generations: int, normalize_std: bool = True, eps: float = 1e-4
) -> Tensor:
    """GRPO advantages (Shao et al. 2024): reward relative to its prompt's group.

    Args:
        rewards: ``(B,)`` one score per completion, the ``num_generations`` completions of each
            prompt in consecutive blocks (prompt 0's completions first, then prompt 1's, ...).
        num_generations: group size k (YAML ``rl.num_generations``).
        normalize_std: divide by the group's (unbiased) std; ``False`` gives Dr. GRPO's
            mean-centred advantages.
        eps: added to the std so a group with identical rewards gets advantages of 0.

    Returns:
        ``(B,)`` advantages ``(r - group mean) / (group std + eps)``.
    """
    groups = _grouped(rewards, num_generations)
    adv = groups - groups.mean(dim=1, keepdim=True)
    if normalize_std:
        adv = adv / (groups.std(dim=1, keepdim=True) + eps)
    return adv.reshape(-1)


@torch.no_grad()
def rloo_advantages(rewards: Tensor, num_generations: int) -> Tensor:
    """REINFORCE Leave-One-Out advantages (Ahmadian et al. 2024).

    Each completion's baseline is the mean reward of the *other* ``k - 1`` completions of the
    same prompt, which keeps the baseline independent of the completion itself (unbiased).
    ``rewards`` is ``(B,)`` grouped as in :func:`group_advantages`; returns ``(B,)``.
    """
    groups = _grouped(rewards, num_generations)
    k = num_generations
    baseline = (groups.sum(dim=1, keepdim=True) - groups) / (k - 1)
    return (groups - baseline).reshape(-1)
