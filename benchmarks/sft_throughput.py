"""fnsft's SFT stage vs a plain TRL SFTTrainer on the shipped Alpaca-style data: useful tokens/s.

    python benchmarks/sft_throughput.py            # SmolLM2-135M, 24 steps, ~20 min on 2 quiet cores
    python benchmarks/sft_throughput.py --quick    # the tiny model, seconds per run (CI smoke)

Writes benchmarks/results/sft_throughput.json (``--quick``: sft_throughput_quick.json). Three
comparisons, each run ``--rounds`` times in alternating order, median reported (see common.py):

- ``equal``: the same model, examples, batch, ``max_length``, LoRA, fp32, learning rate and
  batching (both length-grouped: fnsft's CPU default) — what the wrapper itself costs.
- ``defaults``: each tool as a user gets it for this workload (model, data, steps, batch,
  ``max_length``, LoRA): TRL's SFTConfig defaults (``bf16=True`` even on CPU, random order)
  vs fnsft's (dtype and batching chosen from the hardware, resources from the machine).
- ``zero2``: fnsft on 2 workers with ZeRO-2 at half the per-worker batch (the same global
  batch) beside fnsft on 1 worker.

Useful tokens are non-padding tokens; the first 2 steps (warm-up) are excluded.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (REPO, compare, default_training_args, first_lines, parse_throughput_args,  # noqa: E402
                    fnsft_threads, keep_earlier, plain_training_args, run_fnsft_stage, run_trl_trainer, start_ray,
                    write_result)

DATA = os.path.join(REPO, "examples", "sample_data.jsonl")
LR = 2e-4
LORA = {"use_peft": True, "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05}


def trl_rows(data: str) -> list[dict]:
    """The examples exactly as the fnsft stage hands them to its workers."""
    from fnsft.data.files import load_rows
    from fnsft.data.formats import to_prompt_completion

    return [to_prompt_completion(r, "alpaca") for r in load_rows(data).to_list()]


def run_trl(model_dir: str, data: str, a, defaults: bool) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    torch.set_num_threads(fnsft_threads())
    torch.manual_seed(0)
    out = tempfile.mkdtemp(prefix="trl_sft_")
    tok = AutoTokenizer.from_pretrained(model_dir)
    if defaults:  # what from_pretrained gives a user (float32 weights; TRL's bf16=True autocasts)
        model = AutoModelForCausalLM.from_pretrained(model_dir)
        args = default_training_args(out, a.steps, a.batch)
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        args = plain_training_args(out, a.steps, a.batch, LR, sampling="group_by_length")
    peft = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=SFTConfig(**args, max_length=a.max_length),
                         train_dataset=Dataset.from_list(trl_rows(data)), processing_class=tok, peft_config=peft)
    m = run_trl_trainer(trainer)
    shutil.rmtree(out, ignore_errors=True)
    return m


def stage_config(data: str, a, defaults: bool, batch: int | None = None) -> dict:
    cfg = {"dataset_name_or_path": data, "max_steps": a.steps, "per_device_train_batch_size": batch or a.batch,
           "max_length": a.max_length, **LORA}
    if not defaults:  # same learning rate and no evaluation/checkpoints, as on the TRL side
        cfg.update(learning_rate=LR, eval_split=0, save_steps=0, save_intermediate=False, report_to=["none"],
                   train_sampling_strategy="group_by_length", logging_steps=1)
    return cfg


def run_fnsft(data: str, a, defaults: bool, workers: int = 1) -> dict:
    out = tempfile.mkdtemp(prefix="fnsft_sft_")
    if defaults:
        return run_fnsft_stage(a.model, "sft", stage_config(data, a, True), out)
    return run_fnsft_stage(a.model, "sft", stage_config(data, a, False, a.batch // workers), out,
                           resources={"num_workers": workers}, deepspeed={"zero_stage": 2},
                           torch_dtype="float32")  # equal settings: TRL's side runs bf16=False


def parse(argv=None):
    return parse_throughput_args(argv, __doc__.splitlines()[0], 8, "optimizer steps per run (one epoch over steps x batch examples)",
                                 "global batch (the 2-worker run takes half per worker)", steps=24)


def main(argv=None) -> str:
    a = parse(argv)
    from fnsft.models.builtin import materialize_builtin

    model_dir = materialize_builtin(a.model)
    data = first_lines(DATA, os.path.join(tempfile.mkdtemp(prefix="sft_data_"), "data.jsonl"), a.steps * a.batch)
    results = {"settings": {**vars(a), "examples": a.steps * a.batch, "lora": "r=16 alpha=32 all-linear",
                            "data": "examples/sample_data.jsonl", "torch_threads": fnsft_threads()},
               "model": a.model, "ray_init_s": start_ray()}
    compare(results, a.only, a.rounds, lambda defaults, workers=1: run_fnsft(data, a, defaults, workers=workers),
            lambda defaults: run_trl(model_dir, data, a, defaults))
    if not a.quick:
        keep_earlier(results, "sft_throughput", a.only)
    results["goals"] = {
        "equal_ge_1.0": results.get("equal", {}).get("ratio_fnsft_over_trl", 0) >= 1.0,
        "defaults_ge_1.3": results.get("defaults", {}).get("ratio_fnsft_over_trl", 0) >= 1.3}
    return write_result("sft_throughput_quick" if a.quick else "sft_throughput", results)


if __name__ == "__main__":
    main()
