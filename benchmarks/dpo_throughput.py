"""fnsft's DPO stage vs a plain TRL DPOTrainer on the shipped preference pairs: useful tokens/s.

    python benchmarks/dpo_throughput.py            # SmolLM2-135M, 16 steps, ~15 min on 2 quiet cores
    python benchmarks/dpo_throughput.py --quick    # the tiny model, seconds per run (CI smoke)

Writes benchmarks/results/dpo_throughput.json (``--quick``: dpo_throughput_quick.json). Both
sides train LoRA (r=16, all linear layers; the reference is the adapter-disabled base) with the
sigmoid loss on the same chat-formatted pairs from examples/preferences.jsonl. As in
sft_throughput.py: ``equal`` (same batch, length, fp32, learning rate, beta and length-grouped
pairs), ``defaults`` (TRL's DPOConfig defaults for this workload, ``bf16=True`` even on CPU,
vs fnsft's) and ``zero2`` (2 workers ZeRO-2 vs 1 worker, same global batch), alternating order,
median of ``--rounds``. Useful tokens are the non-padding tokens of the chosen and rejected rows.
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

DATA = os.path.join(REPO, "examples", "preferences.jsonl")
LR = 5e-5
BETA = 0.1
LORA = {"use_peft": True, "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05}


def stage_config(data: str, a, defaults: bool, batch: int | None = None) -> dict:
    cfg = {"preference_dataset_path": data, "max_steps": a.steps, "per_device_train_batch_size": batch or a.batch,
           "max_length": a.max_length, **LORA}
    if not defaults:
        cfg.update(loss_type="sigmoid", beta=BETA, learning_rate=LR, eval_split=0, save_steps=0,
                   save_intermediate=False, report_to=["none"], train_sampling_strategy="group_by_length",
                   logging_steps=1)
    return cfg


def trainer_rows(data: str, a, tokenizer) -> list[dict]:
    """The pairs exactly as the fnsft stage hands them to its workers (chat-formatted)."""
    from fnsft.pipeline.plan import build_plan

    plan = build_plan(data={"model_name_or_path": a.model, "output_dir": tempfile.mkdtemp(prefix="dpo_plan_"),
                            "stages": ["dpo"], "stage_configs": {"dpo": {**stage_config(data, a, False),
                                                                          "eval_split": 0}}})
    return plan.stages[0].stage.prepare_data(tokenizer)[0]["train"]


def run_trl(model_dir: str, data: str, a, defaults: bool) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    torch.set_num_threads(fnsft_threads())
    torch.manual_seed(0)
    out = tempfile.mkdtemp(prefix="trl_dpo_")
    tok = AutoTokenizer.from_pretrained(model_dir)
    if defaults:
        model = AutoModelForCausalLM.from_pretrained(model_dir)
        cfg = DPOConfig(**default_training_args(out, a.steps, a.batch), max_length=a.max_length)
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        cfg = DPOConfig(**plain_training_args(out, a.steps, a.batch, LR, sampling="group_by_length"),
                        max_length=a.max_length, beta=BETA, loss_type=["sigmoid"])
    peft = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
    kwargs = {}
    trainer_class = DPOTrainer
    if not defaults:
        # Equal settings: TRL's DPOTrainer with the two things fnsft's subclass adds for it (the
        # pair lengths the length-grouped sampler needs, prompts cut to max_length / 2 as fnsft
        # does); the loss and the steps are TRL's.
        from fnsft.workers.hf.dpo_trainer import dpo_trainer_class

        trainer_class, kwargs = dpo_trainer_class(), {"max_prompt_length": a.max_length // 2}
    trainer = trainer_class(model=model, args=cfg, train_dataset=Dataset.from_list(trainer_rows(data, a, tok)),
                            processing_class=tok, peft_config=peft, **kwargs)
    m = run_trl_trainer(trainer)
    shutil.rmtree(out, ignore_errors=True)
    return m


def run_fnsft(data: str, a, defaults: bool, workers: int = 1) -> dict:
    out = tempfile.mkdtemp(prefix="fnsft_dpo_")
    if defaults:
        return run_fnsft_stage(a.model, "dpo", stage_config(data, a, True), out)
    return run_fnsft_stage(a.model, "dpo", stage_config(data, a, False, a.batch // workers), out,
                           resources={"num_workers": workers}, deepspeed={"zero_stage": 2},
                           torch_dtype="float32")  # equal settings: TRL's side runs bf16=False


def parse(argv=None):
    return parse_throughput_args(argv, __doc__.splitlines()[0], 4, "optimizer steps per run (first 2 are warm-up)",
                                 "global pairs per step (2 workers: half each)", steps=16)


def main(argv=None) -> str:
    a = parse(argv)
    from fnsft.models.builtin import materialize_builtin

    model_dir = materialize_builtin(a.model)
    data = first_lines(DATA, os.path.join(tempfile.mkdtemp(prefix="dpo_pairs_"), "pairs.jsonl"), a.steps * a.batch)
    results = {"settings": {**vars(a), "pairs": a.steps * a.batch, "lora": "r=16 alpha=32 all-linear",
                            "loss": "sigmoid", "beta": BETA, "data": "examples/preferences.jsonl",
                            "torch_threads": fnsft_threads()},
               "model": a.model, "ray_init_s": start_ray()}
    compare(results, a.only, a.rounds, lambda defaults, workers=1: run_fnsft(data, a, defaults, workers=workers),
            lambda defaults: run_trl(model_dir, data, a, defaults))
    if not a.quick:
        keep_earlier(results, "dpo_throughput", a.only)
    results["goals"] = {"equal_ge_1.0": results.get("equal", {}).get("ratio_fnsft_over_trl", 0) >= 1.0}
    return write_result("dpo_throughput_quick" if a.quick else "dpo_throughput", results)


if __name__ == "__main__":
    main()
