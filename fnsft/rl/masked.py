"""Reductions over the response tokens only.

Token-level tensors in ``fnsft.rl`` are shaped ``(batch, seq)`` with a float ``mask`` of the same
shape that is 1 on response tokens and 0 on prompt and padding tokens. Every statistic the RL
losses need (means, variances, whitening) must ignore the masked-out positions, or padding
length would change the loss.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Guards divisions by an empty mask; small enough to never matter for a non-empty one.
_EPS = 1e-8


def masked_sum(x: Tensor, mask: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """Sum of ``x`` over positions where ``mask`` is non-zero (weighted by ``mask``)."""
    if dim is None:
        return (x * mask).sum()
    return (x * mask).sum(dim=dim, keepdim=keepdim)


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None, keepdim: bool = False) -> Tensor:
    """Mean of ``x`` over the masked positions; 0 where the mask is empty.

    ``dim=None`` averages over every token in the batch (each token weighs the same);
    ``dim=-1`` gives one mean per sequence.
    """
    total = masked_sum(x, mask, dim=dim, keepdim=keepdim)
    count = masked_sum(torch.ones_like(x), mask, dim=dim, keepdim=keepdim)
    return total / count.clamp_min(_EPS)


def masked_var(x: Tensor, mask: Tensor, dim: int | None = None, unbiased: bool = True) -> Tensor:
    """Variance of ``x`` over the masked positions.

    ``unbiased=True`` applies Bessel's correction (n / (n - 1)) using the mask's sum as n,
    matching ``torch.var``'s default; with a single valid token the variance is 0, not NaN.
    """
    mean = masked_mean(x, mask, dim=dim, keepdim=dim is not None)
    var = masked_mean((x - mean) ** 2, mask, dim=dim)
    if unbiased:
        n = masked_sum(torch.ones_like(x), mask, dim=dim)
        var = torch.where(n > 1, var * n / (n - 1).clamp_min(_EPS), torch.zeros_like(var))
    return var


def masked_whiten(x: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """Normalise ``x`` to unit variance (and zero mean if ``shift_mean``) over the masked tokens.

    Statistics are global over the batch (as in PPO's advantage whitening). With
    ``shift_mean=False`` the mean is kept, so only the scale changes (used for rewards, whose
    sign carries meaning). Positions outside the mask are set to 0 so they cannot leak into a
    later unmasked reduction.
    """
    mean = masked_mean(x, mask)
    var = masked_var(x, mask)
    whitened = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask
