import pytest
import torch

from fnsft.rl import (
    conjugate_gradient,
    fisher_vector_product,
    flat_grad,
    flat_params,
    kl_from_logits,
    set_flat_params_,
    trpo_step,
)


def test_conjugate_gradient_solves_spd_system():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(6, 6, generator=g, dtype=torch.float64)
    a = m @ m.T + 6 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, generator=g, dtype=torch.float64)
    x = conjugate_gradient(lambda v: a @ v, b, iters=10)
    torch.testing.assert_close(x, torch.linalg.solve(a, b))


def test_flat_params_roundtrip_and_flat_grad():
    w = torch.nn.Parameter(torch.arange(6.0).view(2, 3))
    b = torch.nn.Parameter(torch.tensor([10.0]))
    unused = torch.nn.Parameter(torch.zeros(2))
    flat = flat_params([w, b])
    torch.testing.assert_close(flat, torch.tensor([0.0, 1, 2, 3, 4, 5, 10]))
    set_flat_params_([w, b], flat * 2)
    assert w[1, 2].item() == 10.0 and b.item() == 20.0
    g = flat_grad((w**2).sum() + b.sum(), [w, b, unused])
    torch.testing.assert_close(g, torch.cat([2 * w.detach().reshape(-1), torch.ones(1), torch.zeros(2)]))


def _categorical_kl_fn(theta):
    old = theta.detach().clone()
    return lambda: kl_from_logits(old.unsqueeze(0), theta.unsqueeze(0), torch.ones(1, theta.shape[0]))


def test_fisher_vector_product_equals_explicit_fisher():
    # Two states, four actions: the Hessian of the mean KL is block diagonal with
    # (diag(p_s) - p_s p_s^T) / 2 for each state s.
    g = torch.Generator().manual_seed(1)
    theta = torch.randn(2, 4, generator=g, dtype=torch.float64, requires_grad=True)
    damping = 0.1
    fvp = fisher_vector_product(_categorical_kl_fn(theta), [theta], damping)
    p = torch.softmax(theta.detach(), dim=-1)
    fisher = torch.block_diag(*[(torch.diag(ps) - torch.outer(ps, ps)) / 2 for ps in p])
    for _ in range(3):  # the graph is reused across products
        v = torch.randn(8, generator=g, dtype=torch.float64)
        torch.testing.assert_close(fvp(v), fisher @ v + damping * v)


def _softmax_problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(5, generator=g, dtype=torch.float64).requires_grad_()
    adv = torch.tensor([0.0, -1.0, 0.5, 2.0, -0.5], dtype=torch.float64)
    p_old = torch.softmax(theta.detach(), -1)

    def loss_fn():  # -E_{a~p_old}[p/p_old * A] = -(p . A)
        return -(torch.softmax(theta, -1) * adv).sum()

    def kl_fn():
        return (p_old * (p_old.log() - torch.log_softmax(theta, -1))).sum()

    return theta, loss_fn, kl_fn


@pytest.mark.parametrize("max_kl", [0.01, 0.05])
def test_trpo_step_improves_within_trust_region(max_kl):
    theta, loss_fn, kl_fn = _softmax_problem()
    before = loss_fn().item()
    stats = trpo_step([theta], loss_fn, kl_fn, max_kl=max_kl)
    assert stats["accepted"]
    assert 0 < stats["kl"] <= max_kl
    assert stats["kl"] > 0.3 * max_kl  # the step really goes toward the region's edge
    assert loss_fn().item() == pytest.approx(before - stats["improvement"])
    assert stats["improvement"] > 0
    assert kl_fn().item() == pytest.approx(stats["kl"])


def test_trpo_step_with_huge_max_kl_still_improves_and_respects_it():
    theta, loss_fn, kl_fn = _softmax_problem(seed=3)
    before = loss_fn().item()
    stats = trpo_step([theta], loss_fn, kl_fn, max_kl=100.0)
    assert stats["accepted"]
    assert stats["kl"] <= 100.0
    assert loss_fn().item() < before


def test_trpo_step_restores_params_when_nothing_is_accepted():
    theta, loss_fn, kl_fn = _softmax_problem()
    start = theta.detach().clone()
    stats = trpo_step([theta], loss_fn, kl_fn, max_kl=0.01, accept_ratio=1e6)
    assert not stats["accepted"] and stats["kl"] == 0.0
    assert torch.equal(theta.detach(), start)


def test_trpo_step_with_zero_gradient_does_nothing():
    theta = torch.zeros(3, requires_grad=True)
    stats = trpo_step([theta], lambda: (theta * 0).sum(), _categorical_kl_fn(theta.view(1, 3)), 0.01)
    assert not stats["accepted"] and torch.equal(theta.detach(), torch.zeros(3))
