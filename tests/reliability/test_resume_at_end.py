"""A run resumed from a checkpoint at its last step trains nothing more (HF would train one step
past ``max_steps``); the model is the checkpoint's (fnsft.workers.resume.stop_if_finished)."""

from __future__ import annotations

import os

import pytest

pytestmark = pytest.mark.slow  # three tiny trainings (~7 s)


def _trainer(model_dir: str, out: str, steps: int):
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model_dir)
    rows = [{"prompt": f"count {i}", "completion": f" {i} {i + 1} {i + 2}"} for i in range(16)]
    args = SFTConfig(output_dir=out, max_steps=steps, per_device_train_batch_size=4, save_steps=steps,
                     logging_steps=1, report_to="none", disable_tqdm=True, use_cpu=True, bf16=False, max_length=32)
    return SFTTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), args=args,
                      train_dataset=Dataset.from_list(rows), processing_class=tok)


def _weights(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_resumed_at_max_steps_trains_nothing(tmp_path, tiny_model_dir):
    from fnsft.workers.resume import FinishedAtCheckpoint, finished_run_metrics, stop_if_finished

    out = str(tmp_path / "run")
    first = _trainer(tiny_model_dir, out, 3)
    first.train()
    saved = _weights(first.model)
    ckpt = os.path.join(out, "checkpoint-3")

    plain = _trainer(tiny_model_dir, str(tmp_path / "plain"), 3)
    plain.train(resume_from_checkpoint=ckpt)
    assert plain.state.global_step == 4  # HF's behaviour this guards against: one step past the end

    resumed = _trainer(tiny_model_dir, str(tmp_path / "resumed"), 3)
    resumed.callback_handler.callbacks.insert(0, stop_if_finished())
    with pytest.raises(FinishedAtCheckpoint):
        resumed.train(resume_from_checkpoint=ckpt)
    assert resumed.state.global_step == 3
    done = finished_run_metrics(resumed)  # what the worker reports for it
    assert done["resumed_finished"] == 1 and done["global_step"] == 3 and done["train_loss"] > 0
    assert not resumed.is_in_train
    after = _weights(resumed.model)
    assert all(bool((after[k] == saved[k]).all()) for k in saved)
