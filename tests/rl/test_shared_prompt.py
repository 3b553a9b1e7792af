"""Completions that repeat a prompt are scored with one pass over it (fnsft.models.shared_prompt):
the same log-probs, entropies and gradients as one full pass per row, with fewer positions run."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def _model(lora: bool = False):
    from transformers import AutoModelForCausalLM

    from fnsft.models.builtin import materialize_builtin
    from fnsft.testing import TINY

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(materialize_builtin(TINY), dtype=torch.float32)
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0))
    model.train()
    return model


def _group_batch(groups: int = 3, per: int = 3, P: int = 7, C: int = 6):
    """GRPO's layout: each prompt ``per`` times in a row, left-padded prompts of different
    lengths, right-padded completions that end at different lengths."""
    torch.manual_seed(1)
    prompts = torch.randint(3, 200, (groups, P))
    pmask = torch.ones(groups, P, dtype=torch.long)
    for g in range(groups):
        pmask[g, : 2 * g] = 0  # prompt g is 2g tokens shorter
    prompts = prompts.masked_fill(pmask == 0, 0)
    B = groups * per
    cmask = torch.ones(B, C, dtype=torch.long)
    for r in range(B):
        cmask[r, C - (r % 3):] = 0  # some completions stopped early
    comp = torch.randint(3, 200, (B, C)).masked_fill(cmask == 0, 0)
    return {"prompt_ids": prompts.repeat_interleave(per, 0), "prompt_mask": pmask.repeat_interleave(per, 0),
            "completion_ids": comp, "completion_mask": cmask}


def _score(model, batch, share: bool, counter: list):
    from fnsft.models.forward import completion_forward

    model.zero_grad()
    handle = model.register_forward_pre_hook(lambda m, a, kw: counter.append(kw["input_ids"].numel()),
                                             with_kwargs=True)
    out = completion_forward(model, batch, temperature=0.7, need_entropy=True, share_prompts=share)
    handle.remove()
    mask = batch["completion_mask"].float()
    (out["logprobs"] * mask).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out, grads, mask


@pytest.mark.parametrize("lora", [False, True])
def test_shared_prompt_pass_gives_the_full_pass_results(lora):
    model, batch = _model(lora), _group_batch()
    full_positions, shared_positions = [], []
    full, g_full, mask = _score(model, batch, False, full_positions)
    shared, g_shared, _ = _score(model, batch, True, shared_positions)

    B, P = batch["prompt_ids"].shape
    C = batch["completion_ids"].shape[1]
    assert full_positions == [B * (P + C)]
    assert shared_positions == [3 * P, B * (C - 1)]  # 3 distinct prompts once, then the completions
    on = mask.bool()
    torch.testing.assert_close(shared["logprobs"][on], full["logprobs"][on], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shared["entropy"][on], full["entropy"][on], atol=1e-5, rtol=1e-5)
    assert g_full and g_full.keys() == g_shared.keys()
    for name, g in g_full.items():
        torch.testing.assert_close(g_shared[name], g, atol=1e-5, rtol=1e-4, msg=name)


def test_distinct_prompts_and_critics_keep_the_single_pass():
    from fnsft.models.forward import ValueHead, completion_forward

    model = _model()
    batch = _group_batch(groups=4, per=1)
    seen: list = []
    handle = model.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["input_ids"].shape), with_kwargs=True)
    with torch.no_grad():
        completion_forward(model, batch)  # no prompt repeats: nothing to share
        completion_forward(model, _group_batch(), value_head=ValueHead.build(model.config.hidden_size))
    handle.remove()
    assert len(seen) == 2 and all(s[1] == 7 + 6 for s in seen)


def test_linear_attention_layers_keep_the_single_pass():
    """A hybrid model's linear-attention cache is a running state, updated in place: no sharing."""
    from fnsft.models.shared_prompt import can_share

    model, batch = _model(), _group_batch()
    assert can_share(model, batch)
    model.config.layer_types = ["linear_attention", "full_attention"]
    assert not can_share(model, batch)
    model.config.layer_types = ["sliding_attention", "full_attention"]
    assert can_share(model, batch)
    model.gradient_checkpointing_enable()  # HF turns the cache off in training then
    assert not can_share(model, batch)
