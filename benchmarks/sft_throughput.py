"""fnsft's SFT stage vs a plain TRL SFTTrainer on the shipped Alpaca-style data: useful tokens/s.

    python benchmarks/sft_throughput.py            # SmolLM2-135M, 24 steps, ~20 min on 2 quiet cores
    python benchmarks/sft_throughput.py --quick    # the tiny model, seconds per run (CI smoke)

Writes benchmarks/results/sft_throughput.json (``--quick``: sft_throughput_quick.json). Three
comparisons, each run ``--rounds`` times (default 3) in alternating order; each side's median
useful tokens/s is reported with its min-max (``useful_tokens_per_s_spread``), every run's load
average before and after, and the CPU model (``machine``); see common.py.

- ``equal``: both sides get the same model, examples, batch, ``max_length``, LoRA, fp32,
  learning rate, batching (both length-grouped: fnsft's CPU default) **and the same LM head**:
  TRL's fused head compacted to labelled positions on CPU by the public
  ``fnsft.compat.trl.compact_lm_head_on_cpu``, which fnsft's workers apply and which this
  script applies around the TRL run too. The two differ only in the process (fnsft's pipeline,
  Ray worker, stage) around the same TRL ``SFTTrainer`` — what the wrapper itself costs.
- ``defaults``: each tool as a user gets it for this workload (model, data, steps, batch,
  ``max_length``, LoRA): plain TRL (SFTConfig defaults: ``bf16=True`` even on CPU, random order,
  the LM head as TRL ships it, projecting every position on CPU) vs fnsft's defaults (dtype and
  batching chosen from the hardware, resources from the machine, the compacted LM head).
- ``zero2``: fnsft on 2 workers with ZeRO-2 at half the per-worker batch (the same global
  batch) beside fnsft on 1 worker, both with fnsft's equal-comparison settings.

Each comparison records ``lm_head_positions`` per side. The LM-head compaction's own effect
(fnsft with vs without it) is benchmarks/lm_head_compact.py. Useful tokens are non-padding
tokens; the first 2 steps (warm-up) are excluded.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (REPO, compare, default_training_args, first_lines, parse_throughput_args,  # noqa: E402
                    fnsft_threads, keep_earlier, plain_training_args, run_fnsft_stage, run_trl_trainer, start_ray,
                    trl_lm_head, write_result)

DATA = os.path.join(REPO, "examples", "sample_data.jsonl")
LR = 2e-4
LORA = {"use_peft": True, "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05}
LM_HEAD: dict = {}  # "equal"/"defaults" -> side -> the lm_head_positions its runs reported


def note_lm_head(defaults: bool, side: str, m: dict) -> dict:
    LM_HEAD.setdefault("defaults" if defaults else "equal", {}).setdefault(side, set()).add(
        m.get("lm_head_positions"))
    return m


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
    # Equal settings: the LM head fnsft's workers run (compacted on CPU); defaults: TRL's own.
    with trl_lm_head(compact=not defaults) as head:
        m = run_trl_trainer(trainer)
    m["lm_head_positions"] = head
    shutil.rmtree(out, ignore_errors=True)
    return note_lm_head(defaults, "trl", m)


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
        return note_lm_head(True, "fnsft", run_fnsft_stage(a.model, "sft", stage_config(data, a, True), out))
    m = run_fnsft_stage(a.model, "sft", stage_config(data, a, False, a.batch // workers), out,
                        resources={"num_workers": workers}, deepspeed={"zero_stage": 2},
                        torch_dtype="float32")  # equal settings: TRL's side runs bf16=False
    return note_lm_head(False, "fnsft", m) if workers == 1 else m


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
    for name, sides in LM_HEAD.items():  # what each side's LM head did (equal: the same on both)
        if name in results:
            results[name]["lm_head_positions"] = {side: sorted(map(str, v)) for side, v in sides.items()}
    if not a.quick:
        keep_earlier(results, "sft_throughput", a.only)
    results["goals"] = {
        "equal_ge_1.0": results.get("equal", {}).get("ratio_fnsft_over_trl", 0) >= 1.0,
        "defaults_ge_1.3": results.get("defaults", {}).get("ratio_fnsft_over_trl", 0) >= 1.3}
    return write_result("sft_throughput_quick" if a.quick else "sft_throughput", results)


if __name__ == "__main__":
    main()
