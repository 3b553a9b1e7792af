import pytest
import torch

from fnsft.errors import ConfigError
from fnsft.rl import discounted_returns, gae, group_advantages, rloo_advantages

GAMMA, LAM = 0.9, 0.8


def test_gae_hand_computed_1x3():
    rewards = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    values = torch.tensor([[0.5, 0.6, 0.7]], dtype=torch.float64)
    mask = torch.ones_like(values)
    # delta_2 = 1 + 0.9*0 - 0.7 = 0.3 (bootstrap 0 after the last token); A_2 = 0.3
    # delta_1 = 0 + 0.9*0.7 - 0.6 = 0.03;  A_1 = 0.03 + 0.9*0.8*0.3   = 0.246
    # delta_0 = 0 + 0.9*0.6 - 0.5 = 0.04;  A_0 = 0.04 + 0.9*0.8*0.246 = 0.21712
    adv, ret = gae(rewards, values, mask, GAMMA, LAM)
    expected = torch.tensor([[0.21712, 0.246, 0.3]], dtype=torch.float64)
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, expected + values)  # [0.71712, 0.846, 1.0]


def test_gae_ignores_prompt_and_padding_positions():
    # The same response behind one prompt token and before one padding token whose value and
    # reward are junk: the answer must not change.
    rewards = torch.tensor([[9.0, 0.0, 0.0, 1.0, 9.0]], dtype=torch.float64)
    values = torch.tensor([[9.0, 0.5, 0.6, 0.7, 5.0]], dtype=torch.float64)
    mask = torch.tensor([[0.0, 1.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    adv, ret = gae(rewards, values, mask, GAMMA, LAM)
    torch.testing.assert_close(adv, torch.tensor([[0.0, 0.21712, 0.246, 0.3, 0.0]], dtype=torch.float64))
    assert ret[0, 0] == 0 and ret[0, 4] == 0


def test_gae_outputs_carry_no_grad():
    values = torch.rand(2, 3, requires_grad=True)
    adv, ret = gae(torch.rand(2, 3), values, torch.ones(2, 3), 1.0, 0.95)
    assert not adv.requires_grad and not ret.requires_grad


def test_discounted_returns_hand_computed_and_equal_to_gae_lam_1():
    rewards = torch.tensor([[1.0, 0.0, 2.0, 7.0]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    # G_2 = 2; G_1 = 0 + 0.9*2 = 1.8; G_0 = 1 + 0.9*1.8 = 2.62
    ret = discounted_returns(rewards, mask, GAMMA)
    torch.testing.assert_close(ret, torch.tensor([[2.62, 1.8, 2.0, 0.0]], dtype=torch.float64))
    values = torch.tensor([[0.3, -0.2, 0.1, 4.0]], dtype=torch.float64)
    _, gae_ret = gae(rewards, values, mask, GAMMA, 1.0)
    torch.testing.assert_close(gae_ret, ret)


def test_group_advantages_two_groups():
    rewards = torch.tensor([1.0, 2.0, 3.0, 0.0, 0.0, 3.0], dtype=torch.float64)
    adv = group_advantages(rewards, num_generations=3, eps=0.0)
    # group 1: mean 2, std 1 -> [-1, 0, 1]; group 2: mean 1, std sqrt(((1+1+4)/2)) = sqrt(3)
    s3 = 3**0.5
    torch.testing.assert_close(adv, torch.tensor([-1.0, 0.0, 1.0, -1 / s3, -1 / s3, 2 / s3], dtype=torch.float64))
    centred = group_advantages(rewards, num_generations=3, normalize_std=False)
    torch.testing.assert_close(centred, torch.tensor([-1.0, 0.0, 1.0, -1.0, -1.0, 2.0], dtype=torch.float64))


def test_group_with_equal_rewards_has_zero_advantage():
    assert (group_advantages(torch.ones(4), num_generations=2) == 0).all()


def test_rloo_two_groups():
    rewards = torch.tensor([1.0, 2.0, 3.0, 0.0, 0.0, 3.0])
    # r_i - mean(others): 1 - 2.5, 2 - 2, 3 - 1.5 | 0 - 1.5, 0 - 1.5, 3 - 0
    torch.testing.assert_close(rloo_advantages(rewards, 3), torch.tensor([-1.5, 0.0, 1.5, -1.5, -1.5, 3.0]))


def test_group_size_errors_are_config_errors():
    with pytest.raises(ConfigError, match="num_generations"):
        rloo_advantages(torch.ones(5), 2)
    with pytest.raises(ConfigError, match="num_generations"):
        group_advantages(torch.ones(4), 1)
