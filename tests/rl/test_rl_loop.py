"""The loop's per-algorithm glue (fnsft.rl.loop) on small tensors: shapes, KL placement, stats."""

import pytest
import torch

from fnsft.rl import ALGORITHMS
from fnsft.rl.loop import LossSettings, compute_advantages, policy_objective, sequence_kl

B, T, V = 8, 5, 11


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(B, T)
    mask[0, 3:] = 0  # a short completion
    logits = torch.randn(B, T, V, generator=g, requires_grad=True)
    ids = torch.randint(0, V, (B, T), generator=g)
    logprobs = torch.log_softmax(logits, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    return {
        "mask": mask, "logits": logits, "logprobs": logprobs,
        "old": logprobs.detach() + 0.01 * torch.randn(B, T, generator=g),
        "ref": logprobs.detach() + 0.1 * torch.randn(B, T, generator=g),
        "values": torch.randn(B, T, generator=g) * 0.1,
        "scores": torch.rand(B, generator=g),
    }


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
@pytest.mark.parametrize("kl_in_reward", [True, False])
def test_every_algorithm_gives_a_finite_loss_with_gradient(name, kl_in_reward):
    spec = ALGORITHMS[name]
    s = LossSettings(num_generations=4, kl_in_reward=kl_in_reward, entropy_coef=0.01)
    b = _batch()
    adv = compute_advantages(spec, s, b["scores"], b["mask"], b["old"], b["ref"],
                             b["values"] if spec.uses_critic else None, kl_coef=0.1)
    # REINFORCE++: whitened returns; on-policy distillation: the teacher's log-prob minus the student's
    per_token = spec.uses_critic or spec.advantage.startswith("reinforce") or spec.advantage == "teacher"
    assert adv["advantages"].shape == ((B, T) if per_token else (B,))
    assert (adv["advantages"][0, 3:] == 0).all() if per_token else True
    if spec.policy_update == "natural":
        return  # TRPO's update is trpo_step (tested in test_rl_trpo.py)
    mb = {"completion_mask": b["mask"], "old_logprobs": b["old"], "advantages": adv["advantages"],
          "ref_logprobs": b["ref"]}
    values = None
    if spec.uses_critic:
        values = (b["values"] + 0.0).requires_grad_(True)
        mb.update(old_values=b["values"], returns=adv["returns"])
    loss, stats = policy_objective(spec, s, b["logprobs"], mb, kl_coef=0.1, values=values, logits=b["logits"])
    assert torch.isfinite(loss)
    loss.backward()
    assert b["logits"].grad is not None and b["logits"].grad.abs().sum() > 0
    assert "entropy" in stats and "policy_loss" in stats
    assert ("value_loss" in stats) == spec.uses_critic
    assert ("clip_fraction" in stats) == (spec.policy_update == "clipped" and spec.loss != "cispo")
    assert ("is_clip_share" in stats) == (spec.loss == "cispo")  # CISPO clips weights, never drops a token
    # KL goes to the loss only when it is not in the reward; "kl" stays the controller's k1 KL.
    # (online_dpo: the reference is inside the DPO pair weights; on_policy_distill: it is the objective.)
    assert ("kl_loss" in stats) == (not kl_in_reward and name not in ("online_dpo", "on_policy_distill"))
    assert "kl" not in stats


def test_kl_in_reward_lowers_group_rewards():
    b = _batch()
    spec, s = ALGORITHMS["rloo"], LossSettings(num_generations=4, kl_in_reward=True)
    with_kl = compute_advantages(spec, s, b["scores"], b["mask"], b["old"], b["ref"], None, kl_coef=1.0)
    expected = b["scores"] - sequence_kl(b["old"], b["ref"], b["mask"])
    torch.testing.assert_close(with_kl["sequence_rewards"], expected)
    no_kl = compute_advantages(spec, s, b["scores"], b["mask"], b["old"], None, None, kl_coef=1.0)
    torch.testing.assert_close(no_kl["sequence_rewards"], b["scores"])
