"""Trust Region Policy Optimisation (Schulman et al. 2015): one natural-gradient step.

TRPO maximises the surrogate ``E[r_t * A_t]`` subject to ``KL(old || new) <= max_kl``:

1. ``g`` = gradient of the surrogate loss.
2. ``s`` solves ``F s = -g`` by conjugate gradient, where ``F`` (the Fisher matrix, the Hessian
   of the KL at the current point) is only touched through Fisher-vector products.
3. The step ``s * sqrt(2 * max_kl / s^T F s)`` reaches the trust region's edge under the
   quadratic KL model; a backtracking line search shrinks it until the loss really improves
   and the *measured* KL is within ``max_kl``.

Everything works on a list of parameters flattened to one vector, so it applies to a whole
model or to its LoRA adapters only (pass just the trainable parameters).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor


def conjugate_gradient(
    Avp: Callable[[Tensor], Tensor], b: Tensor, iters: int = 10, residual_tol: float = 1e-10
) -> Tensor:
    """Solve ``A x = b`` for symmetric positive-definite ``A`` given only ``v -> A v``.

    Starts from ``x = 0``; stops after ``iters`` iterations or when the squared residual norm
    falls below ``residual_tol``.
    """
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = r @ r
    for _ in range(iters):
        if rr <= residual_tol:
            break
        Ap = Avp(p)
        pAp = p @ Ap
        if pAp <= 0:  # A is not positive-definite along p (numerical noise); stop here.
            break
        alpha = rr / pAp
        x = x + alpha * p
        r = r - alpha * Ap
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def flat_grad(
    outputs: Tensor, params: Sequence[Tensor], retain_graph: bool = False, create_graph: bool = False
) -> Tensor:
    """Gradient of scalar ``outputs`` w.r.t. ``params`` as one flat vector (zeros for unused params).

    ``create_graph=True`` (for a second derivative) also keeps the graph, as in ``autograd.grad``.
    """
    params = list(params)
    grads = torch.autograd.grad(
        outputs, params, retain_graph=retain_graph or create_graph, create_graph=create_graph, allow_unused=True
    )
    return torch.cat(
        [(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(params, grads)]
    )


def flat_params(params: Iterable[Tensor]) -> Tensor:
    """All parameters concatenated into one detached flat vector (a copy)."""
    return torch.cat([p.detach().reshape(-1) for p in params]).clone()


@torch.no_grad()
def set_flat_params_(params: Iterable[Tensor], flat: Tensor) -> None:
    """Copy the flat vector ``flat`` back into ``params`` in place (inverse of :func:`flat_params`)."""
    offset = 0
    for p in params:
        n = p.numel()
        p.copy_(flat[offset : offset + n].view_as(p))
        offset += n
    if offset != flat.numel():
        raise ValueError(f"flat vector has {flat.numel()} elements, params have {offset}")


def fisher_vector_product(
    kl_fn: Callable[[], Tensor], params: Sequence[Tensor], damping: float
) -> Callable[[Tensor], Tensor]:
    """Return ``v -> (F + damping * I) v`` with ``F`` the Hessian of ``kl_fn()`` w.r.t. ``params``.

    ``kl_fn()`` must return the scalar mean KL between a *detached* copy of the policy (taken
    before the update) and the current policy. Its gradient at the current point is zero, but
    its Hessian is the Fisher information matrix, obtained by double backprop:
    ``F v = d/dθ (∇θ KL · v)``.

    ``kl_fn`` is evaluated once, here; the returned callable reuses its graph for every
    product (saving a forward pass per CG iteration), so drop it once CG is done to free the
    graph. ``damping`` (YAML ``rl.trpo_damping``) keeps the system well-conditioned.
    """
    params = list(params)
    kl = kl_fn()
    grad_kl = flat_grad(kl, params, create_graph=True)

    def fvp(v: Tensor) -> Tensor:
        v = v.detach()
        hv = flat_grad(grad_kl @ v, params, retain_graph=True)
        return hv + damping * v

    return fvp


def trpo_step(
    params: Iterable[Tensor],
    loss_fn: Callable[[], Tensor],
    kl_fn: Callable[[], Tensor],
    max_kl: float,
    damping: float = 0.1,
    cg_iters: int = 10,
    backtrack_iters: int = 10,
    backtrack_coef: float = 0.5,
    accept_ratio: float = 0.1,
) -> dict[str, float | bool]:
    """Update ``params`` in place by one TRPO step.

    Args:
        params: the trainable parameters (updated in place).
        loss_fn: closure returning the surrogate loss to *minimise* on the current params,
            e.g. :func:`fnsft.rl.trpo_surrogate_loss` against log-probs from before the step.
        kl_fn: closure returning the mean KL(old || current), the old policy frozen before the
            step (e.g. :func:`fnsft.rl.kl_from_logits` with detached old logits).
        max_kl: trust-region radius (YAML ``rl.max_kl``, e.g. 0.01).
        damping: added to the Fisher's diagonal for the CG solve.
        cg_iters: conjugate gradient iterations.
        backtrack_iters, backtrack_coef: the line search tries step fractions
            ``backtrack_coef ** i`` for ``i < backtrack_iters``.
        accept_ratio: a step must achieve at least this share of the improvement predicted by
            the linear model (as well as a positive improvement and KL <= ``max_kl``).

    Returns:
        ``{"accepted", "kl", "improvement", "expected_improvement", "step_frac"}``: whether a
        step was taken, its measured KL, the loss decrease and the fraction of the full step;
        ``kl``, ``improvement`` and ``step_frac`` are 0 when nothing was accepted, in which
        case the parameters are restored exactly.
    """
    params = [p for p in params if p.requires_grad]
    rejected = {"accepted": False, "kl": 0.0, "improvement": 0.0, "expected_improvement": 0.0, "step_frac": 0.0}

    loss = loss_fn()
    grad = flat_grad(loss, params).detach()
    loss_before = float(loss.detach())
    if not torch.isfinite(grad).all() or grad.abs().max() == 0:
        return rejected

    fvp = fisher_vector_product(kl_fn, params, damping)
    step_dir = conjugate_gradient(fvp, -grad, iters=cg_iters)
    shs = float(step_dir @ fvp(step_dir))
    del fvp  # frees the KL graph before the line search
    if not math.isfinite(shs) or shs <= 0:
        return rejected
    full_step = step_dir * math.sqrt(2.0 * max_kl / shs)
    expected_full = float(-(grad @ full_step))  # linear model's predicted loss decrease (> 0)
    if expected_full <= 0:
        return rejected

    old = flat_params(params)
    with torch.no_grad():
        for i in range(backtrack_iters):
            frac = backtrack_coef**i
            set_flat_params_(params, old + frac * full_step)
            improvement = loss_before - float(loss_fn())
            kl = float(kl_fn())
            expected = expected_full * frac
            if (
                math.isfinite(improvement)
                and improvement > 0
                and improvement / expected > accept_ratio
                and kl <= max_kl
            ):
                return {
                    "accepted": True,
                    "kl": kl,
                    "improvement": improvement,
                    "expected_improvement": expected,
                    "step_frac": frac,
                }
    set_flat_params_(params, old)
    return rejected | {"expected_improvement": expected_full}
