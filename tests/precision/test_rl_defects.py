"""RL defects outside the trainer: one test each (each fails on the code before its fix)."""

from __future__ import annotations

import torch

from fnsft.testing import TINY


def test_grpo_in_loss_kl_does_not_overwrite_the_controllers_kl():
    """The trainer logs ``kl`` = mean per-sequence k1 KL and feeds it to the adaptive controller,
    then merges the minibatch stats; GRPO's per-token k3 used to replace it under the same key."""
    from fnsft.rl import ALGORITHMS
    from fnsft.rl.kl import AdaptiveKLController
    from fnsft.rl.loop import LossSettings, policy_objective, sequence_kl

    torch.manual_seed(0)
    B, T = 8, 5
    logp, old = torch.randn(B, T) * 0.1 - 2, torch.randn(B, T) * 0.1 - 2
    ref = logp - 0.5  # the policy moved away from the reference: per-sequence k1 = 5 * 0.5
    mask = torch.ones(B, T)
    s = LossSettings(num_generations=4, kl_in_reward=False)
    mb = {"completion_mask": mask, "old_logprobs": old, "advantages": torch.randn(B), "ref_logprobs": ref}
    k1 = float(sequence_kl(old, ref, mask, "k1").mean())
    stats = {"kl": k1}
    _, st = policy_objective(ALGORITHMS["grpo"], s, logp, mb, kl_coef=0.1)
    stats.update({k: float(v) for k, v in st.items()})  # what the trainer's update() does
    assert stats["kl"] == k1, "the controller must see the per-sequence k1 KL"
    k3 = (torch.exp(ref - logp) - (ref - logp) - 1).mean()
    assert abs(stats["kl_loss"] - float(k3)) < 1e-6  # the in-loss term is still reported
    ctl = AdaptiveKLController(0.1, target=k1, horizon=100)
    ctl.update(stats["kl"], n_steps=B)
    assert abs(ctl.value - 0.1) < 1e-9  # KL on target: the coefficient does not drift


def test_engine_auto_is_hf():
    """An actor given ``engine: auto`` runs HF ``generate`` (the stage resolves auto before Ray: HF on
    CPU, vLLM on a GPU where installed; tests/rl/test_vllm_choice.py covers that choice)."""
    from fnsft.actors.generation import GenerationActor
    from fnsft.models.builtin import materialize_builtin
    from fnsft.models.handle import ModelHandle

    actor = GenerationActor(ModelHandle(source=materialize_builtin(TINY)), engine="auto")
    assert actor.engine == "hf" and actor.llm is None
    out = actor.generate(["hello"], {"max_new_tokens": 3, "temperature": 1.0, "top_k": 5, "top_p": 0.9}, seed=0)
    assert len(out["completion_ids"]) == 1
