"""RL log-probs: the selective log-softmax equals the full one, entropy only when asked, and the
sampled tokens are scored under the same top-k / top-p distribution ``generate`` drew them from."""

from __future__ import annotations

import pytest
import torch

from fnsft.testing import TINY


@pytest.fixture(scope="module")
def tiny():
    from fnsft.models.builtin import materialize_builtin
    from fnsft.models.handle import ModelHandle

    return ModelHandle(source=materialize_builtin(TINY))


def _batch(vocab: int, B: int = 3, P: int = 5, C: int = 6):
    g = torch.Generator().manual_seed(0)
    p_mask = torch.ones(B, P, dtype=torch.long)
    p_mask[0, :2] = 0  # left padding
    c_mask = torch.ones(B, C, dtype=torch.long)
    c_mask[1, 4:] = 0  # right padding
    return {"prompt_ids": torch.randint(3, vocab, (B, P), generator=g), "prompt_mask": p_mask,
            "completion_ids": torch.randint(3, vocab, (B, C), generator=g), "completion_mask": c_mask}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_selective_logprobs_and_entropy_equal_the_full_computation(tiny, dtype):
    from fnsft.models.forward import completion_forward
    from fnsft.rl.losses import entropy_from_logits

    model = tiny.load(dtype=dtype)
    batch = _batch(model.config.vocab_size)
    out = completion_forward(model, batch, temperature=0.7, need_logits=True, need_entropy=True)
    full = out["logits"]  # (B, C, V) float32, temperature applied: the reference computation
    assert full.dtype == torch.float32
    expected = torch.log_softmax(full, -1).gather(-1, batch["completion_ids"].unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(out["logprobs"], expected, rtol=1e-5, atol=1e-5)
    mask = batch["completion_mask"].float()
    torch.testing.assert_close((out["entropy"] * mask).sum() / mask.sum(), entropy_from_logits(full, mask))
    lean = completion_forward(model, batch, temperature=0.7)
    assert set(lean) == {"logprobs"}  # no (B, C, V) logits, no entropy unless asked
    torch.testing.assert_close(lean["logprobs"], out["logprobs"])


def test_logprobs_have_gradients_through_the_selective_path(tiny):
    from fnsft.models.forward import completion_forward

    model = tiny.load(dtype=torch.float32)
    out = completion_forward(model, _batch(model.config.vocab_size), need_entropy=True, top_k=5)
    (out["logprobs"].sum() + out["entropy"].sum()).backward()
    assert model.lm_head.weight.grad is not None and model.lm_head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("top_k,top_p", [(5, 1.0), (0, 0.8), (7, 0.6)])
def test_filter_matches_generate_warpers(top_k, top_p):
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    from fnsft.models.forward import sampling_filter

    logits = torch.randn(8, 50, generator=torch.Generator().manual_seed(1)) * 3
    warpers = LogitsProcessorList([TemperatureLogitsWarper(0.8)] + ([TopKLogitsWarper(top_k)] if top_k else [])
                                  + ([TopPLogitsWarper(top_p)] if top_p < 1 else []))
    hf = warpers(None, logits.clone())
    ours = sampling_filter(logits / 0.8, top_k, top_p)
    assert torch.equal(torch.isinf(hf), torch.isinf(ours))
    torch.testing.assert_close(torch.log_softmax(ours, -1)[~torch.isinf(ours)],
                               torch.log_softmax(hf, -1)[~torch.isinf(hf)])


def test_logprobs_of_top_p_samples_are_those_of_the_truncated_distribution(tiny):
    """Tokens sampled with top_k/top_p get log-probs from the truncated distribution (higher than the
    full softmax's), so the first PPO ratio is exactly 1 where the full softmax would bias it."""
    from fnsft.models.forward import completion_forward

    model = tiny.load(dtype=torch.float32).eval()
    batch = _batch(model.config.vocab_size, C=1)
    with torch.no_grad():
        full = completion_forward(model, batch, temperature=1.0, need_logits=True)
        logits = full["logits"][:, 0]  # (B, V): the next-token distribution at the first step
        # Sample the way generate does with top_k=4, top_p=0.7, then score.
        from transformers import TopKLogitsWarper, TopPLogitsWarper

        warped = TopPLogitsWarper(0.7)(None, TopKLogitsWarper(4)(None, logits.clone()))
        sampled = torch.multinomial(torch.softmax(warped, -1), 1, generator=torch.Generator().manual_seed(0))
        batch["completion_ids"] = sampled
        truncated = completion_forward(model, batch, temperature=1.0, top_k=4, top_p=0.7)["logprobs"][:, 0]
        plain = completion_forward(model, batch, temperature=1.0)["logprobs"][:, 0]
    sampler = torch.log_softmax(warped, -1).gather(-1, sampled).squeeze(-1)
    torch.testing.assert_close(truncated, sampler)
    assert (truncated > plain + 1e-4).all(), "the full softmax under-counts tokens sampled from a nucleus"


def test_sampled_token_outside_the_new_nucleus_stays_finite():
    from fnsft.models.forward import sampling_filter

    logits = torch.tensor([[5.0, 4.0, -3.0, -4.0]])
    kept = sampling_filter(logits, top_k=1, keep=torch.tensor([3]))
    assert torch.isfinite(kept[0, 3]) and torch.isinf(kept[0, 1])
