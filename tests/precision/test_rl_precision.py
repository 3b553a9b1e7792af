"""The RL update under ``torch_dtype: bfloat16`` / ``float16``: float32 master weights (policy and
value head), autocast compute, loss scaling for fp16, for every algorithm; dropout off but
training mode kept, so gradient checkpointing really runs.

Built from the pieces the RL trainer uses (``completion_forward``, ``compute_advantages`` /
``policy_objective``, ``trpo_step``) on the tiny model, without Ray.
"""

from __future__ import annotations

import pytest
import torch

from fnsft.testing import TINY


def _policy(dtype_name: str, critic: bool):
    from fnsft.models.forward import ValueHead
    from fnsft.models.builtin import materialize_builtin
    from fnsft.models.handle import ModelHandle
    from fnsft.models.precision import disable_dropout, resolve_precision

    prec = resolve_precision(dtype_name, on_gpu=False)
    policy = ModelHandle(source=materialize_builtin(TINY)).load(dtype=prec.load_dtype(trainable=True))
    policy.config.attention_dropout = 0.1
    disable_dropout(policy)
    policy.train()
    head = ValueHead.build(policy.config.hidden_size) if critic else None
    return prec, policy, head


def _batch(vocab: int, B: int = 8, P: int = 4, C: int = 5):
    g = torch.Generator().manual_seed(0)
    return {"prompt_ids": torch.randint(3, vocab, (B, P), generator=g), "prompt_mask": torch.ones(B, P, dtype=torch.long),
            "completion_ids": torch.randint(3, vocab, (B, C), generator=g),
            "completion_mask": torch.ones(B, C, dtype=torch.long), "scores": torch.randn(B, generator=g)}


@pytest.mark.parametrize("dtype_name", ["bfloat16", "float16"])
@pytest.mark.parametrize("algorithm", ["ppo", "a2c", "trpo", "grpo", "rloo"])
def test_rl_update_keeps_float32_masters_and_moves_the_weights(algorithm, dtype_name):
    from fnsft.models.forward import completion_forward
    from fnsft.models.precision import optimizer_step
    from fnsft.rl import ALGORITHMS, trpo_step, trpo_surrogate_loss
    from fnsft.rl.loop import LossSettings, compute_advantages, policy_objective

    spec = ALGORITHMS[algorithm]
    prec, policy, head = _policy(dtype_name, spec.uses_critic)
    # TRPO differentiates twice through eager attention (slow in emulated half): a smaller batch.
    b = _batch(policy.config.vocab_size, *((4, 3, 3) if spec.policy_update == "natural" else ()))
    mask = b["completion_mask"].float()
    s = LossSettings(num_generations=4)
    with torch.no_grad(), prec.autocast("cpu"):
        old = completion_forward(policy, b, 1.0, head, top_k=8, top_p=0.9)
    adv = compute_advantages(spec, s, b["scores"], mask, old["logprobs"], None, old.get("values"), 0.0)
    params = [p for p in policy.parameters() if p.requires_grad] + (list(head.parameters()) if head else [])
    before = [p.detach().clone() for p in params]
    assert {p.dtype for p in params} == {torch.float32}
    if spec.policy_update == "natural":
        policy.set_attn_implementation("eager")  # as the trainer: Fisher-vector products differentiate twice

        def loss_fn():
            with prec.autocast("cpu"):
                lp = completion_forward(policy, b, 1.0, top_k=8, top_p=0.9)["logprobs"]
            return trpo_surrogate_loss(lp, old["logprobs"], adv["advantages"], mask)[0]

        from fnsft.rl.kl import kl_from_logits

        with torch.no_grad(), prec.autocast("cpu"):
            old_logits = completion_forward(policy, b, 1.0, need_logits=True)["logits"]

        def kl_fn():
            with prec.autocast("cpu"):
                logits = completion_forward(policy, b, 1.0, need_logits=True)["logits"]
            return kl_from_logits(old_logits, logits, mask)

        stats = trpo_step([p for p in policy.parameters() if p.requires_grad], loss_fn, kl_fn, max_kl=0.01,
                          cg_iters=4)
        assert stats["accepted"], stats
        moved = params[:-2] if head else params
    else:
        opt = torch.optim.AdamW(params, lr=1e-4)
        scaler = prec.grad_scaler("cpu")
        assert (scaler is not None) == (dtype_name == "float16")
        mb = {"completion_mask": b["completion_mask"], "old_logprobs": old["logprobs"], **adv}
        if spec.uses_critic:
            mb["old_values"] = old["values"]
        for _ in range(2):  # the first fp16 step may be skipped while the scaler calibrates
            with prec.autocast("cpu"):
                out = completion_forward(policy, b, 1.0, head, need_entropy=True, top_k=8, top_p=0.9)
            assert out["logprobs"].dtype == torch.float32
            loss, st = policy_objective(spec, s, out["logprobs"], mb, 0.0, values=out.get("values"),
                                        entropy=out["entropy"])
            assert torch.isfinite(loss)
            optimizer_step(loss, opt, params, 1.0, scaler)
        opt_params = [p for g in opt.param_groups for p in g["params"]]
        assert {p.dtype for p in opt_params} == {torch.float32}
        assert all(v["exp_avg"].dtype == torch.float32 for v in opt.state.values())
        moved = params
    changed = sum(not torch.equal(p.detach(), b0) for p, b0 in zip(params, before))
    assert changed >= len(moved) - 2, f"{changed}/{len(params)} tensors changed"  # (tied/unused rows aside)
    assert {p.dtype for p in params} == {torch.float32}


def test_dropout_off_but_training_mode_keeps_gradient_checkpointing():
    from fnsft.models.forward import completion_forward

    _, policy, _ = _policy("float32", critic=False)
    assert policy.training and policy.config.attention_dropout == 0.0
    assert all(m.attention_dropout == 0.0 for m in policy.modules() if hasattr(m, "attention_dropout"))
    policy.gradient_checkpointing_enable()
    calls = []
    policy.model.layers[0].self_attn.register_forward_hook(lambda *a: calls.append(1))
    b = _batch(policy.config.vocab_size)
    lp = completion_forward(policy, b)["logprobs"]
    lp.sum().backward()
    assert len(calls) == 2, "the checkpointed layer is recomputed in the backward pass"
    policy.eval()  # what the RL trainer did for "no dropout": HF then skips checkpointing
    calls.clear()
    completion_forward(policy, b)["logprobs"].sum().backward()
    assert len(calls) == 1
    policy.train()
    with torch.no_grad():  # dropout off: the same weights give the same log-probs (ratio 1)
        torch.testing.assert_close(completion_forward(policy, b)["logprobs"], lp.detach())


@pytest.mark.parametrize("dtype_name", ["bfloat16", "float16"])
def test_trainer_strategy_steps_float32_masters(dtype_name):
    """The RL trainer's own pieces (policy_value_module + Strategy, plain torch): autocast forward,
    fp16 loss scaling, value head on the half hidden state, float32 optimizer state."""
    import types

    from fnsft.workers.rl.learner import policy_value_module
    from fnsft.workers.rl.strategy import Strategy
    from fnsft.rl import ALGORITHMS
    from fnsft.rl.loop import LossSettings, compute_advantages, policy_objective

    prec, policy, head = _policy(dtype_name, critic=True)
    module = policy_value_module(policy, head, prec, top_k=8, top_p=0.9)
    c = types.SimpleNamespace(max_grad_norm=1.0, learning_rate=1e-4, weight_decay=0.0, warmup_steps=0,
                              lr_scheduler_type="constant", optim="adamw_torch_fused")
    params = [p for p in module.parameters() if p.requires_grad]
    strategy = Strategy(module, params, types.SimpleNamespace(stage_config=c, deepspeed=None), 1, 8, 10,
                        torch.device("cpu"), prec)
    assert (strategy.scaler is not None) == (dtype_name == "float16")
    assert strategy.optimizer.defaults["fused"] is True  # HF's default optim, honoured by the RL trainer
    b = _batch(policy.config.vocab_size)
    mask = b["completion_mask"].float()
    with torch.no_grad():
        old = module(b, 1.0)
    spec, s = ALGORITHMS["ppo"], LossSettings()
    adv = compute_advantages(spec, s, b["scores"], mask, old["logprobs"], None, old["values"], 0.0)
    mb = {"completion_mask": b["completion_mask"], "old_logprobs": old["logprobs"], "old_values": old["values"], **adv}
    before = [p.detach().clone() for p in params]
    for _ in range(2):
        out = strategy(b, 1.0, need_entropy=True, entropy_grad=False)
        loss, st = policy_objective(spec, s, out["logprobs"], mb, 0.0, values=out["values"], entropy=out["entropy"])
        strategy.backward_step(loss)
    assert abs(float(st["ratio_mean"]) - 1.0) < 0.05
    assert {p.dtype for g in strategy.optimizer.param_groups for p in g["params"]} == {torch.float32}
    assert sum(not torch.equal(p.detach(), b0) for p, b0 in zip(params, before)) >= len(params) - 2


def test_rl_guard_stops_on_a_nan_loss():
    from fnsft.workers.finite_guard import NonFiniteLoss, check_finite_stats
    from fnsft.models.precision import resolve_precision

    check_finite_stats("rl", {"policy_loss": 0.3, "entropy": float("nan")}, 2, None, 1e-3)  # not a loss
    with pytest.raises(NonFiniteLoss, match=r"^stage rl: value_loss is inf at iteration 4.*float16 overflow"):
        check_finite_stats("rl", {"policy_loss": 0.3, "value_loss": float("inf")}, 4,
                           resolve_precision("float16", False), 1e-3)
