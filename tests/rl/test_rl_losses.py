import math

import pytest
import torch

from fnsft.rl import a2c_policy_loss, entropy_from_logits, grpo_loss, ppo_policy_loss, trpo_surrogate_loss, value_loss

# Ratios 1.5, 0.5, 1.0, 1.1, 0.5 and a masked-out 100 (must be ignored).
RATIOS = torch.tensor([[1.5, 0.5, 1.0, 1.1, 0.5, 100.0]], dtype=torch.float64)
ADV = torch.tensor([[1.0, 1.0, -1.0, -1.0, -1.0, 1.0]], dtype=torch.float64)
MASK = torch.tensor([[1.0, 1.0, 1.0, 1.0, 1.0, 0.0]], dtype=torch.float64)


def test_ppo_clipped_loss_hand_computed():
    old = torch.full_like(RATIOS, -1.0)
    logp = (old + RATIOS.log()).requires_grad_()
    loss, stats = ppo_policy_loss(logp, old, ADV, MASK, clip_range=0.2)
    # per token max(-A r, -A clip(r, 0.8, 1.2)):
    #   r=1.5,A=+1: max(-1.5, -1.2) = -1.2  (clipped)
    #   r=0.5,A=+1: max(-0.5, -0.8) = -0.5
    #   r=1.0,A=-1: 1.0 ; r=1.1,A=-1: 1.1
    #   r=0.5,A=-1: max(0.5, 0.8)   = 0.8   (clipped)
    assert loss.item() == pytest.approx((-1.2 - 0.5 + 1.0 + 1.1 + 0.8) / 5)
    assert stats["clip_fraction"].item() == pytest.approx(2 / 5)
    assert stats["ratio_mean"].item() == pytest.approx((1.5 + 0.5 + 1.0 + 1.1 + 0.5) / 5)
    k3 = [r - 1 - math.log(r) for r in (1.5, 0.5, 1.0, 1.1, 0.5)]
    assert stats["approx_kl"].item() == pytest.approx(sum(k3) / 5)
    loss.backward()
    # Clipped tokens (and the masked one) get no gradient; the others d/dlogp = -A r / 5.
    torch.testing.assert_close(
        logp.grad, torch.tensor([[0.0, -0.5 / 5, 1.0 / 5, 1.1 / 5, 0.0, 0.0]], dtype=torch.float64)
    )


def test_ppo_accepts_sequence_advantages():
    logp = torch.randn(2, 3)
    adv = torch.tensor([1.0, -2.0])
    a, _ = ppo_policy_loss(logp, logp, adv, torch.ones(2, 3), 0.2)
    b, _ = ppo_policy_loss(logp, logp, adv[:, None].expand(2, 3), torch.ones(2, 3), 0.2)
    torch.testing.assert_close(a, b)
    assert a.item() == pytest.approx(0.5)  # ratio 1: -mean(A) = -(1 - 2)/2


def test_value_clipping():
    values = torch.tensor([[1.0, 1.0]])
    old = torch.tensor([[0.5, 0.5]])
    returns = torch.tensor([[0.0, 2.0]])
    mask = torch.ones(1, 2)
    # token 0: unclipped (1-0)^2 = 1, clipped (0.7-0)^2 = 0.49 -> 1
    # token 1: unclipped (1-2)^2 = 1, clipped (0.7-2)^2 = 1.69 -> 1.69
    loss, stats = value_loss(values, old, returns, mask, clip_range_value=0.2)
    assert loss.item() == pytest.approx(0.5 * (1 + 1.69) / 2)
    assert stats["value_clip_fraction"].item() == pytest.approx(0.5)
    loss, _ = value_loss(values, old, returns, mask, clip_range_value=None)
    assert loss.item() == pytest.approx(0.5)


def test_a2c_loss_is_minus_mean_logprob_times_advantage():
    logp = torch.tensor([[-1.0, -2.0, -3.0]], requires_grad=True)
    adv = torch.tensor([[2.0, 1.0, 5.0]])
    loss, _ = a2c_policy_loss(logp, adv, torch.tensor([[1.0, 1.0, 0.0]]))
    assert loss.item() == pytest.approx(-(-2.0 - 2.0) / 2)
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-1.0, -0.5, 0.0]]))


def test_trpo_surrogate_gradient_equals_policy_gradient_at_old_point():
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    adv = torch.tensor([[2.0, -1.0]])
    loss, _ = trpo_surrogate_loss(logp, logp.detach(), adv, torch.ones(1, 2))
    loss.backward()
    torch.testing.assert_close(logp.grad, -adv / 2)


def test_entropy_uniform_and_stable():
    mask = torch.tensor([[1.0, 0.0]])
    logits = torch.zeros(1, 2, 4)
    assert entropy_from_logits(logits, mask).item() == pytest.approx(math.log(4))
    peaked = torch.tensor([[[0.0, -1e4, -1e4, -1e4], [0.0, 0.0, 0.0, 0.0]]])
    h = entropy_from_logits(peaked, mask)
    assert torch.isfinite(h) and h.item() == pytest.approx(0.0, abs=1e-6)


def test_grpo_loss_matches_ppo_plus_k3_kl():
    torch.manual_seed(0)
    logp, old, ref = torch.randn(3, 2, 4).unbind(0)
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    adv = torch.tensor([0.7, -1.3])
    ppo, _ = ppo_policy_loss(logp, old, adv, mask, 0.2)
    plain, _ = grpo_loss(logp, old, adv, mask, 0.2)
    torch.testing.assert_close(plain, ppo)
    with_kl, stats = grpo_loss(logp, old, adv, mask, 0.2, ref_logprobs=ref, kl_coef=0.1)
    k3 = torch.exp(ref - logp) - (ref - logp) - 1
    kl = (k3 * mask).sum() / mask.sum()
    torch.testing.assert_close(with_kl, ppo + 0.1 * kl)
    torch.testing.assert_close(stats["kl_loss"], kl)
    seq, _ = grpo_loss(logp, old, adv, mask, 0.2, loss_agg="sequence")
    # Same token losses as the PPO term, averaged per sequence then over the batch.
    r = torch.exp(logp - old)
    per_tok = torch.maximum(-adv[:, None] * r, -adv[:, None] * r.clamp(0.8, 1.2))
    expected = ((per_tok * mask).sum(1) / mask.sum(1)).mean()
    torch.testing.assert_close(seq, expected)
