"""TRL's fused LM head, compacted on CPU (fnsft.compat.trl.compact_lm_head_on_cpu): it projects only the
labelled positions, and every per-token output, the loss and every gradient stay what TRL's
all-positions path gives."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def _model_and_batch():
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from fnsft.models.builtin import materialize_builtin
    from fnsft.testing import TINY

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(materialize_builtin(TINY), dtype=torch.float32)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))
    ids = torch.randint(3, 200, (3, 12))
    attention = torch.ones_like(ids)
    attention[1, 9:] = 0  # right padding, as the collator pads
    labels = ids.clone()
    labels[:, :5] = -100  # the prompt
    labels[0, :8] = -100  # a longer prompt
    labels[attention == 0] = -100
    return model, {"input_ids": ids, "attention_mask": attention, "labels": labels}


def _run(model, batch):
    model.zero_grad()
    out = model(**batch, fused_lm_head=True)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out, grads


def test_cpu_scores_only_labelled_positions_with_identical_results(monkeypatch):
    import trl.kernels.chunked_logprob as kernels
    import trl.trainer.utils as trl_utils

    from fnsft.compat.trl import compact_lm_head_on_cpu

    rows: list[int] = []
    function = trl_utils._ChunkedLogProbFunction

    class Counting(function):  # the real function, counting the rows it projects
        @staticmethod
        def apply(hidden, *args):
            rows.append(hidden.shape[0])
            return function.apply(hidden, *args)

    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", Counting)
    monkeypatch.setattr(trl_utils, "_use_triton", kernels._use_triton)  # TRL as shipped; restored after
    model, batch = _model_and_batch()
    labelled = int((batch["labels"][:, 1:] != -100).sum())
    every = batch["labels"][:, 1:].numel()

    before, grads_before = _run(model, batch)
    assert compact_lm_head_on_cpu() and compact_lm_head_on_cpu()  # idempotent
    after, grads_after = _run(model, batch)

    assert rows == [every, labelled] and labelled < every / 2
    for field in ("log_probs", "entropy", "is_top1", "label_mask"):
        assert torch.allclose(getattr(before, field).float(), getattr(after, field).float(), atol=1e-6), field
    assert torch.allclose(before.loss, after.loss, atol=1e-6)
    assert grads_before.keys() == grads_after.keys() and grads_before
    for name, g in grads_before.items():
        assert torch.allclose(g, grads_after[name], atol=1e-6), name
    assert trl_utils._use_triton(torch.device("meta")) is False  # only the CPU decision changed
