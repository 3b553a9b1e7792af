"""fnsft's DPO stage vs a plain TRL DPOTrainer on the shipped preference pairs: useful tokens/s.

    python benchmarks/dpo_throughput.py            # SmolLM2-135M, 16 steps, ~15 min on 2 quiet cores
    python benchmarks/dpo_throughput.py --quick    # the tiny model, seconds per run (CI smoke)

Writes benchmarks/results/dpo_throughput.json (``--quick``: dpo_throughput_quick.json). Both
sides train LoRA (r=16, all linear layers; the reference is the adapter-disabled base) with the
sigmoid loss on the same chat-formatted pairs from examples/preferences.jsonl. The TRL side is
always TRL's own public ``trl.DPOTrainer`` (not fnsft's subclass). As in sft_throughput.py,
three comparisons, each run ``--rounds`` times (default 3) in alternating order, each side's
median useful tokens/s with its min-max (``useful_tokens_per_s_spread``), every run's load and
the CPU model:

- ``equal``: both sides get the same batch, length, fp32, learning rate, beta, length-grouped
  pairs (TRL: a ``length`` column and ``remove_unused_columns=False``, public arguments) and the
  same LM head (TRL's fused head compacted to labelled positions on CPU by the public
  ``fnsft.compat.trl.compact_lm_head_on_cpu``, which fnsft's workers apply and this script
  applies around the TRL run). fnsft also cuts each prompt's start to ``max_length // 2``
  (``max_prompt_length``), which TRL 1.16's DPOConfig cannot express; the JSON's
  ``settings.prompts_over_max_prompt_length`` counts the pairs where that differs (0 on the
  full SmolLM2 run, so the rows are the same; the ``--quick`` run has some).
- ``defaults``: plain TRL (DPOConfig defaults for this workload, ``bf16=True`` even on CPU,
  random order, the LM head as TRL ships it) vs fnsft's defaults.
- ``zero2``: fnsft 2 workers ZeRO-2 vs 1 worker, same global batch.

Each comparison records ``lm_head_positions`` per side; the compaction's own effect is
benchmarks/lm_head_compact.py. Useful tokens are the non-padding tokens of the chosen and
rejected rows.
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

DATA = os.path.join(REPO, "examples", "preferences.jsonl")
LR = 5e-5
BETA = 0.1
LORA = {"use_peft": True, "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05}
LM_HEAD: dict = {}  # "equal"/"defaults" -> side -> the lm_head_positions its runs reported


def note_lm_head(defaults: bool, side: str, m: dict) -> dict:
    LM_HEAD.setdefault("defaults" if defaults else "equal", {}).setdefault(side, set()).add(
        m.get("lm_head_positions"))
    return m


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


def _chat_ids(tokenizer, messages, **kw) -> list[int]:
    out = tokenizer.apply_chat_template(messages, tokenize=True, **kw)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def with_lengths(rows: list[dict], tokenizer, max_length: int) -> list[dict]:
    """The pairs with a ``length`` column for HF's length-grouped sampler: each pair's padded row
    (prompt plus the longer answer, capped at ``max_length``), as TRL tokenizes it and as
    fnsft's DPO trainer measures it (``fnsft.workers.hf.dpo_trl.pair_lengths``)."""
    return [{**r, "length": min(max(len(_chat_ids(tokenizer, r["prompt"] + r["chosen"])),
                                    len(_chat_ids(tokenizer, r["prompt"] + r["rejected"]))), max_length)}
            for r in rows]


def prompts_over(rows: list[dict], tokenizer, limit: int) -> int:
    """Pairs whose prompt is longer than ``limit`` tokens (fnsft cuts their start; TRL cannot)."""
    return sum(len(_chat_ids(tokenizer, r["prompt"], add_generation_prompt=True)) > limit for r in rows)


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
    rows = trainer_rows(data, a, tok)
    if defaults:
        model = AutoModelForCausalLM.from_pretrained(model_dir)
        cfg = DPOConfig(**default_training_args(out, a.steps, a.batch), max_length=a.max_length)
    else:
        # Equal settings through DPOConfig's public arguments on TRL's own DPOTrainer. fnsft's
        # subclass (fnsft.workers.hf.dpo_trl.FnsftDPOTrainer) adds, for this workload, the pairs'
        # lengths for the length-grouped sampler (here: a ``length`` column, kept by
        # remove_unused_columns=False; the collator reads only the token columns) and prompts
        # cut to max_length // 2, which TRL 1.16 has no argument for (see the docstring); the
        # rest of it (SimPO, a per-rank reference precompute, metric names) is unused here.
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        cfg = DPOConfig(**plain_training_args(out, a.steps, a.batch, LR, sampling="group_by_length"),
                        max_length=a.max_length, beta=BETA, loss_type=["sigmoid"], remove_unused_columns=False)
        rows = with_lengths(rows, tok, a.max_length)
    peft = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = DPOTrainer(model=model, args=cfg, train_dataset=Dataset.from_list(rows), processing_class=tok,
                         peft_config=peft)
    # Equal settings: the LM head fnsft's workers run (compacted on CPU); defaults: TRL's own.
    with trl_lm_head(compact=not defaults) as head:
        m = run_trl_trainer(trainer)
    m["lm_head_positions"] = head
    shutil.rmtree(out, ignore_errors=True)
    return note_lm_head(defaults, "trl", m)


def run_fnsft(data: str, a, defaults: bool, workers: int = 1) -> dict:
    out = tempfile.mkdtemp(prefix="fnsft_dpo_")
    if defaults:
        return note_lm_head(True, "fnsft", run_fnsft_stage(a.model, "dpo", stage_config(data, a, True), out))
    m = run_fnsft_stage(a.model, "dpo", stage_config(data, a, False, a.batch // workers), out,
                        resources={"num_workers": workers}, deepspeed={"zero_stage": 2},
                        torch_dtype="float32")  # equal settings: TRL's side runs bf16=False
    return note_lm_head(False, "fnsft", m) if workers == 1 else m


def parse(argv=None):
    return parse_throughput_args(argv, __doc__.splitlines()[0], 4, "optimizer steps per run (first 2 are warm-up)",
                                 "global pairs per step (2 workers: half each)", steps=16)


def main(argv=None) -> str:
    a = parse(argv)
    from fnsft.models.builtin import materialize_builtin

    from transformers import AutoTokenizer

    model_dir = materialize_builtin(a.model)
    data = first_lines(DATA, os.path.join(tempfile.mkdtemp(prefix="dpo_pairs_"), "pairs.jsonl"), a.steps * a.batch)
    tok = AutoTokenizer.from_pretrained(model_dir)
    results = {"settings": {**vars(a), "pairs": a.steps * a.batch, "lora": "r=16 alpha=32 all-linear",
                            "loss": "sigmoid", "beta": BETA, "data": "examples/preferences.jsonl",
                            "torch_threads": fnsft_threads(),
                            "prompts_over_max_prompt_length": prompts_over(trainer_rows(data, a, tok), tok,
                                                                           a.max_length // 2)},
               "model": a.model, "ray_init_s": start_ray()}
    compare(results, a.only, a.rounds, lambda defaults, workers=1: run_fnsft(data, a, defaults, workers=workers),
            lambda defaults: run_trl(model_dir, data, a, defaults))
    for name, sides in LM_HEAD.items():  # what each side's LM head did (equal: the same on both)
        if name in results:
            results[name]["lm_head_positions"] = {side: sorted(map(str, v)) for side, v in sides.items()}
    if not a.quick:
        keep_earlier(results, "dpo_throughput", a.only)
    results["goals"] = {"equal_ge_1.0": results.get("equal", {}).get("ratio_fnsft_over_trl", 0) >= 1.0}
    return write_result("dpo_throughput_quick" if a.quick else "dpo_throughput", results)


if __name__ == "__main__":
    main()
