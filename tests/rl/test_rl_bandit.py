"""End-to-end sanity: every update rule teaches a 5-armed softmax bandit to pull arm 3.

Actions are one-token "responses": token tensors are (batch, 1) with a mask of ones.
"""

import pytest
import torch

from fnsft.rl import (
    a2c_policy_loss,
    group_advantages,
    grpo_loss,
    kl_from_logits,
    ppo_policy_loss,
    rloo_advantages,
    trpo_step,
    trpo_surrogate_loss,
    value_loss,
)

ARMS, GOOD_ARM, STEPS, BATCH = 5, 3, 50, 32
MASK = torch.ones(BATCH, 1)


def _sample(theta, gen):
    """Sample a batch of arms from the current policy; return actions (B,) and rewards (B,)."""
    with torch.no_grad():
        actions = torch.multinomial(torch.softmax(theta, -1), BATCH, replacement=True, generator=gen)
    rewards = (actions == GOOD_ARM).float()
    return actions, rewards


def _logprobs(theta, actions):
    return torch.log_softmax(theta, -1)[actions].unsqueeze(-1)


def _p_good(theta):
    return torch.softmax(theta.detach(), -1)[GOOD_ARM].item()


def _train_ppo(theta, gen):
    opt = torch.optim.Adam([theta], lr=0.05)
    for _ in range(STEPS):
        actions, rewards = _sample(theta, gen)
        old = _logprobs(theta, actions).detach()
        adv = (rewards - rewards.mean()).unsqueeze(-1)
        for _ in range(4):  # several epochs on one batch: the ratio and clipping matter
            loss, _ = ppo_policy_loss(_logprobs(theta, actions), old, adv, MASK, clip_range=0.2)
            opt.zero_grad()
            loss.backward()
            opt.step()


def _train_a2c(theta, gen):
    value = torch.zeros(1, requires_grad=True)  # the bandit's critic: one scalar
    opt = torch.optim.Adam([theta, value], lr=0.1)
    for _ in range(STEPS):
        actions, rewards = _sample(theta, gen)
        returns = rewards.unsqueeze(-1)
        values = value.expand(BATCH, 1)
        adv = (returns - values).detach()
        pl, _ = a2c_policy_loss(_logprobs(theta, actions), adv, MASK)
        vl, _ = value_loss(values, values.detach(), returns, MASK, clip_range_value=None)
        opt.zero_grad()
        (pl + vl).backward()
        opt.step()


def _train_grpo(theta, gen):
    opt = torch.optim.Adam([theta], lr=0.05)
    ref = theta.detach().clone()
    for _ in range(STEPS):
        actions, rewards = _sample(theta, gen)  # 8 prompts x 4 generations (one state)
        adv = group_advantages(rewards, num_generations=4)
        old = _logprobs(theta, actions).detach()
        ref_lp = _logprobs(ref, actions)
        for _ in range(2):
            loss, _ = grpo_loss(_logprobs(theta, actions), old, adv, MASK, 0.2, ref_logprobs=ref_lp, kl_coef=0.01)
            opt.zero_grad()
            loss.backward()
            opt.step()


def _train_rloo(theta, gen):
    opt = torch.optim.Adam([theta], lr=0.1)
    for _ in range(STEPS):
        actions, rewards = _sample(theta, gen)
        adv = rloo_advantages(rewards, num_generations=4)
        loss, _ = a2c_policy_loss(_logprobs(theta, actions), adv, MASK)
        opt.zero_grad()
        loss.backward()
        opt.step()


def _train_trpo(theta, gen):
    for _ in range(STEPS):
        actions, rewards = _sample(theta, gen)
        adv = rewards - rewards.mean()
        old = _logprobs(theta, actions).detach()
        old_logits = theta.detach().clone().view(1, 1, ARMS)

        def loss_fn():
            return trpo_surrogate_loss(_logprobs(theta, actions), old, adv, MASK)[0]

        def kl_fn():
            return kl_from_logits(old_logits, theta.view(1, 1, ARMS), torch.ones(1, 1))

        stats = trpo_step([theta], loss_fn, kl_fn, max_kl=0.02)
        assert stats["kl"] <= 0.02


@pytest.mark.parametrize("train", [_train_ppo, _train_a2c, _train_grpo, _train_rloo, _train_trpo])
def test_reward_rises(train):
    gen = torch.Generator().manual_seed(0)
    theta = torch.zeros(ARMS, requires_grad=True)
    assert _p_good(theta) == pytest.approx(1 / ARMS)
    train(theta, gen)
    assert _p_good(theta) > 0.9, f"{train.__name__}: P(good arm) = {_p_good(theta):.3f}"
