"""SFT and DPO keep float32 master weights under ``torch_dtype: bfloat16`` / ``float16``.

Each test builds the worker's trainer in this process (the same pieces ``train_worker`` uses:
``resolve_precision`` → ``load_for_training`` → ``common_training_args`` → the stage's trainer
factory, with the NaN guard), trains a few steps with a small learning rate on the tiny model, and
checks: the optimizer steps float32 tensors, the weights moved, the loss stayed finite.
"""

from __future__ import annotations

import os
import types

import pytest

from fnsft.pipeline.plan import build_plan
from fnsft.testing import EXAMPLES, TINY, tiny_sft_config

PREFERENCES = os.path.join(EXAMPLES, "preferences.jsonl")


def _stage(tmp_path, kind: str, **over):
    if kind == "sft":
        cfg = tiny_sft_config(tmp_path / "o", **over)
    else:
        stage = {"preference_dataset_path": PREFERENCES, "per_device_train_batch_size": 4, "max_length": 96,
                 "max_prompt_length": 64, "save_steps": 0, "report_to": ["none"], "eval_split": 0.2, **over}
        cfg = {"model_name_or_path": TINY, "output_dir": str(tmp_path / "o"), "stages": ["dpo"],
               "stage_configs": {"dpo": stage}}
    return build_plan(data=cfg).stages[0].stage


def build_worker_trainer(tmp_path, kind: str, torch_dtype: str, rows: int = 8, **over):
    """The trainer ``train_worker`` builds, in this process (no Ray, no DeepSpeed)."""
    from datasets import Dataset

    from fnsft.workers.finite_guard import guard_trainer
    from fnsft.workers.hf.args import common_training_args
    from fnsft.models.builtin import materialize_builtin
    from fnsft.models.handle import ModelHandle
    from fnsft.models.loading import load_for_training, load_tokenizer, lora_config
    from fnsft.models.precision import resolve_precision

    stage = _stage(tmp_path, kind, **over)
    c = stage.config
    handle = ModelHandle(source=materialize_builtin(TINY))
    tokenizer = load_tokenizer(handle.source)
    data, _ = stage.prepare_data(tokenizer)
    job = types.SimpleNamespace(stage_config=c, model=handle, use_gpu=False, deepspeed=None, data={"train": None},
                                stage_name=kind, batching=None)
    precision = resolve_precision(torch_dtype, on_gpu=False)
    model = load_for_training(handle, c, precision, str(tmp_path / "scratch"))
    args = common_training_args(job, str(tmp_path / "trainer"), precision)
    trainer = stage.trainer.build(job=job, model=model, tokenizer=tokenizer,
                                  train_dataset=Dataset.from_list(data["train"][:rows]), eval_dataset=None,
                                  args=args, peft_config=lora_config(c) if c.use_peft else None)
    guard_trainer(trainer, kind, precision)
    return trainer, precision


@pytest.mark.parametrize("kind,torch_dtype,use_peft", [
    ("sft", "bfloat16", False), ("sft", "float16", False), ("sft", "bfloat16", True), ("sft", "float16", True),
    ("dpo", "bfloat16", False), ("dpo", "float16", False),
])
def test_trains_with_float32_master_weights(tmp_path, kind, torch_dtype, use_peft):
    import math

    import torch

    trainer, precision = build_worker_trainer(tmp_path, kind, torch_dtype, max_steps=2, learning_rate=1e-4,
                                              use_peft=use_peft, logging_steps=1)
    assert trainer.args.bf16 == (torch_dtype == "bfloat16")
    model = trainer.model
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(t.dtype == torch.float32 for t in trainable.values())
    if use_peft:  # the frozen base stays in the compute dtype: half the memory, no optimizer state
        frozen = [p.dtype for n, p in model.named_parameters() if not p.requires_grad and p.dim() == 2]
        assert set(frozen) == {precision.compute_dtype}
    trainer.train()
    params = [p for g in trainer.optimizer.param_groups for p in g["params"]]
    assert params and {p.dtype for p in params} == {torch.float32}, "optimizer must step float32 masters"
    moved = [n for n, p in model.named_parameters() if n in trainable and not torch.equal(p.detach(), trainable[n])]
    assert len(moved) == len(trainable), f"{len(trainable) - len(moved)} trainable tensors did not move at lr 1e-4"
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses and all(math.isfinite(x) for x in losses)


def test_bf16_master_keeps_updates_that_bf16_weights_round_away():
    """Why masters matter: an update of 1e-4 relative size vanishes in bf16 weights, not in fp32."""
    import torch

    w = torch.ones(1000)
    step = torch.full_like(w, 1e-4)
    assert torch.equal((w.bfloat16() - step.bfloat16()), w.bfloat16())  # bf16: 1 - 1e-4 rounds to 1
    assert not torch.equal(w - step, w)


@pytest.mark.parametrize("kind", ["sft", "dpo"])
def test_gradient_checkpointing_is_what_the_stage_says(tmp_path, kind):
    """fnsft's default (off) reaches TRL, whose configs would otherwise switch it on unasked."""
    trainer, _ = build_worker_trainer(tmp_path / "default", kind, "float32")
    assert trainer.args.gradient_checkpointing is False
    assert not trainer.model.is_activation_checkpointing
    trainer, _ = build_worker_trainer(tmp_path / "asked", kind, "float32", gradient_checkpointing=True)
    assert trainer.args.gradient_checkpointing is True
