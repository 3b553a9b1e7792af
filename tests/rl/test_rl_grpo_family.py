"""The GRPO family's losses and advantages against each paper's formula, computed here by hand.

Every test builds a small batch with known ratios, writes the paper's objective out token by
token in plain Python (never through ``fnsft.rl``), and compares the loss and its gradient.
"""

import math

import numpy as np
import pytest
import torch

from fnsft.rl.grpo_family import (aggregate_loss, cispo_loss, clipped_loss, constant_groups, overlong_penalty,
                                  reinforce_pp_advantages, scaled_group_advantages)

# Two sequences: row 0 has 4 response tokens, row 1 has 2 (then padding with a wild ratio).
RATIOS = torch.tensor([[1.25, 0.75, 1.1, 1.5], [0.7, 1.35, 50.0, 50.0]], dtype=torch.float64)
MASK = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
OLD = torch.full_like(RATIOS, -1.0)


def _logp():
    return (OLD + RATIOS.log()).clone().requires_grad_()


def _tokens(mask=MASK):
    return [(i, t) for i in range(mask.shape[0]) for t in range(mask.shape[1]) if mask[i, t] > 0]


def test_dapo_decoupled_clip_token_mean():
    """DAPO eq. 8: min(r A, clip(r, 1 - eps_low, 1 + eps_high) A), averaged over all tokens."""
    adv = torch.tensor([1.0, -1.0], dtype=torch.float64)
    logp = _logp()
    loss, st = clipped_loss(logp, OLD, adv, MASK, epsilon=0.2, epsilon_high=0.28, agg="token_mean")
    toks = _tokens()
    expect, grad = 0.0, torch.zeros_like(RATIOS)
    for i, t in toks:
        r, a = RATIOS[i, t].item(), adv[i].item()
        clipped = min(max(r, 0.8), 1.28)
        expect += -min(r * a, clipped * a) / len(toks)
        if r * a <= clipped * a:  # the unclipped term is the min: it carries the gradient
            grad[i, t] = -a * r / len(toks)
    assert loss.item() == pytest.approx(expect)
    loss.backward()
    torch.testing.assert_close(logp.grad, grad)
    # r=1.25 with A>0 still learns under clip-higher (PPO's symmetric 0.2 would clip it); r=1.5 does not.
    assert logp.grad[0, 0] != 0 and logp.grad[0, 3] == 0
    # high: A>0 and r > 1.28 (1.5); low: A<0 and r < 0.8 (0.7); of 6 tokens.
    assert st["clip_fraction_high"].item() == pytest.approx(1 / 6)
    assert st["clip_fraction_low"].item() == pytest.approx(1 / 6)
    assert st["clip_fraction"].item() == pytest.approx(2 / 6)


def test_dr_grpo_sums_tokens_over_a_constant():
    """Dr. GRPO: advantages r - mean (no std) and sum_t / max_new_tokens (no 1/|o_i|), mean over sequences."""
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.5], dtype=torch.float64)
    adv = scaled_group_advantages(rewards, 2, "none")
    torch.testing.assert_close(adv, torch.tensor([0.5, -0.5, 0.0, 0.0], dtype=torch.float64))
    logp = _logp()
    a2 = torch.tensor([0.5, -0.5], dtype=torch.float64)
    loss, _ = clipped_loss(logp, OLD, a2, MASK, 10.0, 10.0, agg="seq_mean_token_sum", max_new_tokens=8)
    expect = sum(-RATIOS[i, t].item() * a2[i].item() for i, t in _tokens()) / 8 / 2
    assert loss.item() == pytest.approx(expect)
    loss.backward()
    # Every token's gradient is -A r / (G * L_max): a token of the short answer weighs as much as one of the long.
    for i, t in _tokens():
        assert logp.grad[i, t].item() == pytest.approx(-a2[i].item() * RATIOS[i, t].item() / 16)


def test_gspo_sequence_ratio_and_clip():
    """GSPO eq. 5-7: s_i = exp(mean_t log r_t), min(s A, clip(s) A), mean over sequences."""
    adv = torch.tensor([1.0, 1.0], dtype=torch.float64)
    logp = _logp()
    eps_lo, eps_hi = 0.05, 0.05
    loss, st = clipped_loss(logp, OLD, adv, MASK, eps_lo, eps_hi, level="sequence", agg="seq_mean_token_mean")
    s = [math.exp(sum(math.log(RATIOS[i, t].item()) for t in range(4) if MASK[i, t]) / MASK[i].sum().item())
         for i in range(2)]
    per_seq = [-min(s[i] * 1.0, min(max(s[i], 1 - eps_lo), 1 + eps_hi) * 1.0) for i in range(2)]
    assert loss.item() == pytest.approx(sum(per_seq) / 2)
    assert st["seq_ratio_mean"].item() == pytest.approx(sum(s) / 2)
    assert st["seq_ratio_max"].item() == pytest.approx(max(s))
    loss.backward()
    lengths = MASK.sum(dim=1)
    for i, t in _tokens():
        clipped = s[i] > 1 + eps_hi  # A > 0: only the upper clip binds
        want = 0.0 if clipped else -s[i] / lengths[i].item() / 2  # d s_i / d logp_t = s_i / |o_i|
        assert logp.grad[i, t].item() == pytest.approx(want)
    assert (s[0] > 1.05) != (s[1] > 1.05)  # the batch has one clipped and one free sequence


def test_cispo_clipped_is_weight_keeps_every_token():
    """CISPO (MiniMax-M1 eq. 4): sg(min(r, 1 + eps_high)) * A * log pi, token mean; no token's gradient is 0."""
    adv = torch.tensor([1.0, -2.0], dtype=torch.float64)
    logp = _logp()
    loss, st = cispo_loss(logp, OLD, adv, MASK, epsilon_high=0.3, agg="token_mean")
    toks = _tokens()
    expect = sum(-min(RATIOS[i, t].item(), 1.3) * adv[i].item() * logp[i, t].item() for i, t in toks) / len(toks)
    assert loss.item() == pytest.approx(expect)
    loss.backward()
    for i, t in toks:  # the weight is a constant: d/dlogp = -w A / N, even where PPO would clip
        assert logp.grad[i, t].item() == pytest.approx(-min(RATIOS[i, t].item(), 1.3) * adv[i].item() / len(toks))
    assert logp.grad[1, 2] == 0  # padding
    assert st["is_clip_share"].item() == pytest.approx(2 / 6)  # 1.5 and 1.35 exceed the cap 1.3
    assert st["is_weight_mean"].item() == pytest.approx((1.25 + 0.75 + 1.1 + 1.3 + 0.7 + 1.3) / 6)


def test_reinforce_pp_whitens_returns_over_the_batch():
    """REINFORCE++: r_t = -beta KL_t (+ score on the last token), G_t = sum_{s>=t} r_s, whitened over all tokens."""
    scores = torch.tensor([1.0, 0.0], dtype=torch.float64)
    logp = torch.tensor([[-1.0, -0.5, -2.0, -1.0], [-0.3, -0.9, 0.0, 0.0]], dtype=torch.float64)
    ref = torch.tensor([[-1.2, -0.5, -1.0, -1.5], [-0.3, -0.4, 0.0, 0.0]], dtype=torch.float64)
    beta = 0.1
    adv, _ = reinforce_pp_advantages(scores, MASK, logp, ref, beta, "k1", gamma=1.0)
    returns = {}
    for i in range(2):
        valid = [t for t in range(4) if MASK[i, t]]
        g = 0.0
        for t in reversed(valid):
            r = -beta * (logp[i, t] - ref[i, t]).item() + (scores[i].item() if t == valid[-1] else 0.0)
            g += r
            returns[(i, t)] = g
    vals = np.array(list(returns.values()))
    mean, std = vals.mean(), vals.std(ddof=1)
    for (i, t), g in returns.items():
        assert adv[i, t].item() == pytest.approx((g - mean) / std, rel=1e-5)
    assert adv[1, 2] == 0 and adv[1, 3] == 0


def test_reinforce_pp_baseline_subtracts_the_group_mean_first():
    scores = torch.tensor([1.0, 0.0, 3.0, 3.0], dtype=torch.float64)
    mask = torch.ones(4, 2, dtype=torch.float64)
    adv, rewards = reinforce_pp_advantages(scores, mask, None, None, 0.0, num_generations=2)
    centred = [0.5, -0.5, 0.0, 0.0]  # each group's mean out; no KL: the score sits on the last token
    torch.testing.assert_close(rewards[:, 1], torch.tensor(centred, dtype=torch.float64))
    vals = np.array([c for c in centred for _ in range(2)])  # G_t equals the score on both tokens
    want = (vals - vals.mean()) / vals.std(ddof=1)
    torch.testing.assert_close(adv.reshape(-1), torch.tensor(want, dtype=torch.float64), rtol=1e-5, atol=1e-6)


def test_scale_rewards_group_batch_none():
    r = torch.tensor([1.0, 0.0, 2.0, 4.0], dtype=torch.float64)
    centred = torch.tensor([0.5, -0.5, -1.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(scaled_group_advantages(r, 2, "none"), centred)
    torch.testing.assert_close(scaled_group_advantages(r, 2, "batch"), centred / (r.std() + 1e-4))
    group_std = torch.tensor([math.sqrt(0.5)] * 2 + [math.sqrt(2.0)] * 2, dtype=torch.float64)
    torch.testing.assert_close(scaled_group_advantages(r, 2, "group"), centred / (group_std + 1e-4))


def test_overlong_penalty_ramps_over_the_buffer():
    lengths = torch.tensor([4, 6, 7, 8, 10])
    # max_new_tokens 10, buffer 4: free up to 6 tokens, then (6 - L) / 4, -1 at 10.
    pen = overlong_penalty(lengths, 10, 4, factor=0.5)
    torch.testing.assert_close(pen, 0.5 * torch.tensor([0.0, 0.0, -0.25, -0.5, -1.0]))
    assert overlong_penalty(lengths, 10, 0).abs().sum() == 0


def test_aggregate_modes_and_empty_rows():
    per_token = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0], [9.0, 9.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # row 2: out of the loss
    assert aggregate_loss(per_token, mask, "token_mean").item() == pytest.approx(10 / 4)
    assert aggregate_loss(per_token, mask, "seq_mean_token_mean").item() == pytest.approx((2 + 4) / 2)
    assert aggregate_loss(per_token, mask, "seq_mean_token_sum", 5).item() == pytest.approx((6 / 5 + 4 / 5) / 2)


def test_constant_groups():
    assert constant_groups(np.array([1, 1, 0, 1, 0.5, 0.5], np.float32), 2).tolist() == [True, False, True]
