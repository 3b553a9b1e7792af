"""Default batching (fnsft.workers.hf.batching): less padding, the same per-example losses.

The stages' own trainer factories run in this process on the tiny model (no Ray): the default
batches (length-grouped on CPU) must give every example exactly the loss it gets in a
random-order padded batch, and must carry far less padding. Padding-free batches (the default
on a GPU with FlashAttention, an override elsewhere) are checked the same way.
"""

from __future__ import annotations

import os
import types
from collections import defaultdict

import pytest

from fnsft.workers.hf.batching import Batching, choose_batching, flash_attention_available
from fnsft.errors import ConfigError
from fnsft.pipeline.plan import build_plan, describe_plan
from fnsft.testing import EXAMPLES, TINY

SFT_DATA = os.path.join(EXAMPLES, "sample_data.jsonl")
PREFERENCES = os.path.join(EXAMPLES, "preferences.jsonl")
GROUPED = Batching(False, "group_by_length", None, "test")
RANDOM = Batching(False, "random", None, "test")


# The choice ---------------------------------------------------------------------------------
def test_choice_follows_the_attention_kernel():
    assert choose_batching(None, None, on_gpu=False, flash=True).train_sampling_strategy == "group_by_length"
    assert not choose_batching(None, None, on_gpu=False, flash=True).padding_free  # CPU: SDPA mixes examples
    assert not choose_batching(None, None, on_gpu=True, flash=False).padding_free  # GPU without flash_attn
    gpu = choose_batching(None, None, on_gpu=True, flash=True)
    assert gpu.padding_free and gpu.attn_implementation == "flash_attention_2"
    assert gpu.train_sampling_strategy == "random"
    dpo = choose_batching(None, None, on_gpu=True, flash=True, supports_padding_free=False)
    assert not dpo.padding_free and dpo.train_sampling_strategy == "group_by_length"
    # The user's TRL/HF keys win.
    assert choose_batching(False, "random", on_gpu=True, flash=True) == Batching(
        False, "random", None, "padding_free set in the config; train_sampling_strategy set in the config")


def _plan(tmp_path, stage: str, **section):
    data = SFT_DATA if stage == "sft" else PREFERENCES
    key = "dataset_name_or_path" if stage == "sft" else "preference_dataset_path"
    return build_plan(data={"model_name_or_path": TINY, "output_dir": str(tmp_path / "o"), "stages": [stage],
                            "stage_configs": {stage: {key: data, **section}}})


def test_plan_states_the_choice_and_rejects_bad_values(tmp_path):
    text = describe_plan(_plan(tmp_path, "sft"))
    assert "batching: length-grouped padded batches (train_sampling_strategy=group_by_length)" in text
    text = describe_plan(_plan(tmp_path, "sft", train_sampling_strategy="random"))
    assert "batching: padded batches (train_sampling_strategy=random)" in text
    text = describe_plan(_plan(tmp_path, "dpo"))
    assert "batching: length-grouped padded batches" in text
    with pytest.raises(ConfigError, match=r"stage_configs.sft.train_sampling_strategy: unknown value 'by_len'"):
        _plan(tmp_path, "sft", train_sampling_strategy="by_len")
    with pytest.raises(ConfigError, match=r"stage_configs.dpo.padding_free: TRL 1.16 disables"):
        _plan(tmp_path, "dpo", padding_free=True)
    with pytest.raises(ConfigError, match=r"stage_configs.sft.padding_free: packing"):
        _plan(tmp_path, "sft", padding_free=True, packing=True)


def test_cot_distillation_keeps_random_order_unless_asked(tmp_path):
    """Rationales' lengths follow their problems' step counts: grouped batches learned less."""
    cot = {"reasoning_dataset_path": os.path.join(EXAMPLES, "reasoning", "train.jsonl"),
           "teacher_model_type": "function", "teacher_model_path": os.path.join(EXAMPLES, "reasoning", "teacher.py:solve")}

    def plan(**section):
        return describe_plan(build_plan(data={"model_name_or_path": TINY, "output_dir": str(tmp_path / "o"),
                                              "stages": ["cot_distillation"],
                                              "stage_configs": {"cot_distillation": {**cot, **section}}}))

    assert "batching: padded batches (train_sampling_strategy=random): auto: random order" in plan()
    assert "length-grouped padded batches" in plan(train_sampling_strategy="group_by_length")
    assert choose_batching(None, None, on_gpu=True, flash=True, random_order_reason="x").padding_free  # GPU: no padding


# Trainers built by the stages' trainer factories, in this process ---------------------------
def _job(stage_config, batching: Batching, tiny_model_dir: str):
    from fnsft.models.handle import ModelHandle

    return types.SimpleNamespace(stage_config=stage_config, batching=batching, data={"train": None},
                                 use_gpu=False, deepspeed=None, model=ModelHandle(source=tiny_model_dir))


def _trainer(tmp_path, stage: str, batching: Batching, tiny_model_dir: str, on_gpu: bool = False):
    import torch
    from datasets import Dataset

    from fnsft.workers.hf.args import common_training_args
    from fnsft.models.loading import load_tokenizer

    plan = _plan(tmp_path, stage, per_device_train_batch_size=8, max_length=96, seed=3,
                 **({"max_prompt_length": 64} if stage == "dpo" else {}))
    st = plan.stages[0].stage
    tok = load_tokenizer(tiny_model_dir)
    data, _ = st.prepare_data(tok)
    job = _job(st.config, batching, tiny_model_dir)
    job.use_gpu = on_gpu
    args = common_training_args(job, str(tmp_path / "trainer"), torch.float32)
    args.update(batching.trainer_args(), report_to="none", save_strategy="no")
    torch.manual_seed(0)
    model = job.model.load(dtype=torch.float32)
    if on_gpu:
        model = model.cuda()
    if batching.attn_implementation:
        model.set_attn_implementation(batching.attn_implementation)
    return st.trainer.build(job=job, model=model, tokenizer=tok, train_dataset=Dataset.from_list(data["train"]),
                            eval_dataset=None, args=args, peft_config=None)


def _token_logps(model, batch):
    """log p of each label token (0 where ignored) for a padded or padding-free batch."""
    import torch

    inputs = {k: batch[k].to(model.device) for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
    with torch.no_grad():
        logits = model(**inputs).logits.float()
    labels = batch["labels"].to(model.device)[:, 1:]
    logps = torch.log_softmax(logits[:, :-1], -1).gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    return logps * (labels != -100), labels != -100


def sft_example_losses(trainer) -> tuple[dict, int, int]:
    """Per-example mean completion NLL over one epoch of the trainer's own train batches,
    keyed by the example's tokens; plus the padding and real positions computed."""
    losses: dict = defaultdict(list)
    pad = real = 0
    for batch in trainer.get_train_dataloader():
        logps, mask = _token_logps(trainer.model, batch)
        if "attention_mask" in batch:  # padded: one example per row
            rows = [(i, batch["attention_mask"][i].bool()) for i in range(len(batch["input_ids"]))]
            pad += int((batch["attention_mask"] == 0).sum())
            real += int(batch["attention_mask"].sum())
            for i, keep in rows:
                key = tuple(batch["input_ids"][i][keep].tolist())
                losses[key].append(float(-logps[i].sum() / mask[i].sum()))
        else:  # padding-free: one row, examples start where position_ids restart
            starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist() + [batch["input_ids"].size(1)]
            real += batch["input_ids"].size(1)
            for a, b in zip(starts, starts[1:]):
                key = tuple(batch["input_ids"][0, a:b].tolist())
                # logps[j] scores token j+1; example a..b-1 scores tokens a+1..b-1
                losses[key].append(float(-logps[0, a:b - 1].sum() / mask[0, a:b - 1].sum()))
    return {k: sorted(v) for k, v in losses.items()}, pad, real


def dpo_pair_losses(trainer, beta: float = 0.1) -> tuple[dict, int, int]:
    """Per-pair DPO loss -logsig(beta (logp(chosen) - logp(rejected))) over one epoch of the
    trainer's train batches (the policy as its own reference would make every loss log 2)."""
    import torch.nn.functional as F

    losses: dict = defaultdict(list)
    pad = real = 0
    for batch in trainer.get_train_dataloader():
        batch = dict(batch)
        batch["labels"] = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
        logps, _ = _token_logps(trainer.model, batch)
        seq = logps.sum(-1)
        n = len(seq) // 2
        pad += int((batch["attention_mask"] == 0).sum())
        real += int(batch["attention_mask"].sum())
        for i in range(n):
            key = tuple(batch["input_ids"][i][batch["attention_mask"][i].bool()].tolist())
            losses[key].append(float(-F.logsigmoid(beta * (seq[i] - seq[n + i]))))
    return {k: sorted(v) for k, v in losses.items()}, pad, real


def _same_losses(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and len(a) > 20
    worst = max(abs(x - y) for k in a for x, y in zip(a[k], b[k]))
    assert worst < 1e-5, worst


@pytest.mark.slow  # builds TRL trainers on the tiny model: ≈1 s each (the fast run stays under a minute)
def test_sft_default_batches_keep_each_loss_with_far_less_padding(tmp_path, tiny_model_dir):
    grouped = _trainer(tmp_path, "sft", GROUPED, tiny_model_dir)
    assert type(grouped._get_train_sampler()).__name__ == "LengthGroupedSampler"
    losses, pad, real = sft_example_losses(grouped)
    ref, ref_pad, ref_real = sft_example_losses(_trainer(tmp_path, "sft", RANDOM, tiny_model_dir))
    _same_losses(losses, ref)
    assert real == ref_real
    # The shipped Alpaca-style data: random batches are about half padding; grouped ones little.
    assert pad < 0.25 * ref_pad, (pad, ref_pad, real)


@pytest.mark.slow  # builds TRL trainers on the tiny model: ≈1 s each (the fast run stays under a minute)
def test_dpo_default_batches_keep_each_pair_loss_with_far_less_padding(tmp_path, tiny_model_dir):
    grouped = _trainer(tmp_path, "dpo", GROUPED, tiny_model_dir)
    losses, pad, real = dpo_pair_losses(grouped)
    ref, ref_pad, ref_real = dpo_pair_losses(_trainer(tmp_path, "dpo", RANDOM, tiny_model_dir))
    _same_losses(losses, ref)
    assert real == ref_real
    assert pad < 0.5 * ref_pad, (pad, ref_pad, real)


@pytest.mark.slow  # builds TRL trainers on the tiny model: ≈1 s each (the fast run stays under a minute)
def test_padding_free_on_cpu_keeps_each_loss(tmp_path, tiny_model_dir):
    """padding_free: true (the user's override) on CPU: no padding computed, and transformers
    keeps the concatenated examples apart (a mask from position_ids, no KV cache in training)."""
    padfree = _trainer(tmp_path, "sft", Batching(True, "random", None, "test"), tiny_model_dir)
    assert padfree.data_collator.padding_free
    losses, pad, _ = sft_example_losses(padfree)
    ref, _, _ = sft_example_losses(_trainer(tmp_path, "sft", RANDOM, tiny_model_dir))
    assert pad == 0
    _same_losses(losses, ref)


def test_concatenated_examples_mix_without_the_mask(tiny_model_dir):
    """Why padding-free needs that mask or a varlen kernel: with a KV cache (or no position_ids)
    SDPA attends across the concatenated examples and the second one's logits move."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    torch.manual_seed(0)
    a, b = torch.randint(5, 100, (7,)), torch.randint(5, 100, (5,))
    alone = model(b[None], use_cache=False).logits[0]
    row, pos = torch.cat([a, b])[None], torch.cat([torch.arange(7), torch.arange(5)])[None]
    kept = model(row, position_ids=pos, use_cache=False).logits[0, 7:]
    mixed = model(row, position_ids=pos, use_cache=True).logits[0, 7:]
    assert (kept - alone).abs().max() < 1e-4
    assert (mixed - alone).abs().max() > 1e-2


@pytest.mark.skipif(not flash_attention_available(), reason="needs a GPU with the flash_attn package")
def test_padding_free_with_flash_attention_keeps_each_loss(tmp_path, tiny_model_dir):
    gpu = choose_batching(None, None, on_gpu=True)
    assert gpu.padding_free
    losses, pad, _ = sft_example_losses(_trainer(tmp_path, "sft", gpu, tiny_model_dir, on_gpu=True))
    ref, _, _ = sft_example_losses(_trainer(tmp_path, "sft", RANDOM, tiny_model_dir, on_gpu=True))
    assert pad == 0
    assert losses.keys() == ref.keys()
    assert max(abs(x - y) for k in ref for x, y in zip(losses[k], ref[k])) < 1e-3  # fp32 vs varlen kernel
