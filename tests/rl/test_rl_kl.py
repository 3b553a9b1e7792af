import math

import pytest
import torch

from fnsft.errors import ConfigError
from fnsft.rl import AdaptiveKLController, FixedKLController, add_kl_to_rewards, kl_from_logits, kl_penalty

LOGP = torch.tensor([math.log(0.5)], dtype=torch.float64)
REF = torch.tensor([math.log(0.25)], dtype=torch.float64)
LN2 = math.log(2)


def test_kl_estimators_known_values():
    assert kl_penalty(LOGP, REF, "k1").item() == pytest.approx(LN2)
    assert kl_penalty(LOGP, REF, "k2").item() == pytest.approx(0.5 * LN2**2)
    # k3 = ref/pi - 1 - log(ref/pi) = 0.5 - 1 + ln 2
    assert kl_penalty(LOGP, REF, "k3").item() == pytest.approx(LN2 - 0.5)
    assert kl_penalty(REF, LOGP, "abs").item() == pytest.approx(LN2)
    assert kl_penalty(LOGP, LOGP, "k3").item() == 0.0
    with pytest.raises(ConfigError, match="k1"):
        kl_penalty(LOGP, REF, "k4")


def test_k1_and_k3_are_unbiased_on_samples():
    torch.manual_seed(0)
    p = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
    q = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    exact = (p * (p / q).log()).sum()
    a = torch.multinomial(p, 200_000, replacement=True)
    for kind in ("k1", "k3"):
        est = kl_penalty(p.log()[a], q.log()[a], kind).mean()
        assert est.item() == pytest.approx(exact.item(), abs=0.01)


def test_kl_from_logits_exact():
    p = torch.tensor([[[0.5, 0.5]]])
    q = torch.tensor([[[0.25, 0.75]]])
    kl = kl_from_logits(p.log(), q.log(), torch.ones(1, 1))
    assert kl.item() == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(0.5 / 0.75))


def test_add_kl_to_rewards_places_score_on_last_valid_token():
    logp = torch.tensor([[0.0, -1.0, -1.0, 0.0], [-1.0, -1.0, 0.0, 0.0]])
    ref = torch.tensor([[0.0, -2.0, -1.5, 0.0], [-1.0, -1.0, 0.0, 0.0]])
    mask = torch.tensor([[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    rewards = add_kl_to_rewards(torch.tensor([3.0, -1.0]), logp, ref, mask, kl_coef=0.1)
    # row 0: k1 KL = [., 1.0, 0.5, .] -> -0.1, -0.05 + 3 on the last valid token (index 2)
    # row 1: only index 0 valid, KL 0 -> score -1 there
    torch.testing.assert_close(rewards, torch.tensor([[0.0, -0.1, 2.95, 0.0], [-1.0, 0.0, 0.0, 0.0]]))
    empty = add_kl_to_rewards(torch.tensor([5.0]), logp[:1], ref[:1], torch.zeros(1, 4), 0.1)
    assert (empty == 0).all()


def test_fixed_controller_does_not_move():
    c = FixedKLController(0.05)
    c.update(10.0, 256)
    assert c.value == 0.05


def test_adaptive_controller_moves_the_right_way():
    high = AdaptiveKLController(0.1, target=6.0, horizon=10_000)
    high.update(12.0, n_steps=256)  # error clipped to +0.2
    assert high.value == pytest.approx(0.1 * (1 + 0.2 * 256 / 10_000))
    low = AdaptiveKLController(0.1, target=6.0, horizon=10_000)
    low.update(5.4, n_steps=256)  # error -0.1
    assert low.value == pytest.approx(0.1 * (1 - 0.1 * 256 / 10_000))
    on_target = AdaptiveKLController(0.1, target=6.0, horizon=10_000)
    on_target.update(6.0, n_steps=256)
    assert on_target.value == pytest.approx(0.1)
