"""Online DPO's pieces: pair selection and row weights whose gradient is exactly the DPO gradient."""

import torch
import torch.nn.functional as F

from fnsft.rl.preference import dpo_policy_loss, dpo_row_weights, preference_pairs


def test_pairs_best_and_worst_of_each_group_skip_ties_and_invalid():
    scores = [0.1, 0.9, 0.5, 0.5, 0.3, 0.3, 1.0, 0.0]
    valid = [True, True, True, True, True, True, False, True]
    assert preference_pairs(scores, valid, 2) == [(1, 0)]  # (2,3) tie, (4,5) tie, (6,7) one valid row
    assert preference_pairs(scores, valid, 4) == [(1, 0), (4, 7)]  # the invalid 1.0 is not chosen
    assert preference_pairs([0.2, 0.2, 0.7, 0.1], [True] * 4, 4) == [(2, 3)]


def test_row_weights_give_the_dpo_gradient():
    torch.manual_seed(0)
    B, C, beta = 4, 5, 0.3
    theta = torch.randn(B, C, requires_grad=True)  # stands for the policy's per-token log-probs
    ref = torch.randn(B, C)
    mask = torch.ones(B, C)
    mask[1, 3:] = 0
    scores = torch.tensor([0.2, 0.8, 0.9, 0.1])  # pairs: (1, 0) and (2, 3)
    weights, stats = dpo_row_weights(theta.detach(), ref, mask, scores, 2, beta)
    loss, _ = dpo_policy_loss(theta, weights, mask)
    (grad_rows,) = torch.autograd.grad(loss, theta)

    seq = ((theta - ref) * mask).sum(-1)
    dpo = -F.logsigmoid(beta * torch.stack([seq[1] - seq[0], seq[2] - seq[3]])).mean()
    (grad_dpo,) = torch.autograd.grad(dpo, theta)
    assert torch.allclose(grad_rows, grad_dpo, atol=1e-6)
    assert abs(stats["dpo_loss"] - float(dpo)) < 1e-6 and stats["dpo_pairs"] == 2.0
