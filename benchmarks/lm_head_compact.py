"""TRL's fused LM head on CPU: every position (TRL as shipped) vs labelled positions only
(fnsft.compat.trl.compact_lm_head_on_cpu), timed on a training step's forward and backward.

    python benchmarks/lm_head_compact.py                         # tiny-llama and SmolLM2-135M
    python benchmarks/lm_head_compact.py --models builtin:tiny-llama --reps 4

The model as TRL's SFTTrainer trains it here (LoRA r16 on all linear layers, fp32, TRL's fused
LM head), one batch of the shipped data (8 rows, ``max_length`` 128, prompt and padding
unlabelled, as TRL's completion-only loss masks them). The two sides alternate, ``--reps`` times
each; the minimum and the median seconds are reported (on a shared machine the minimum is the
least disturbed run). Writes benchmarks/results/lm_head_compact.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import REPO, SMOLLM2, TINY, fnsft_threads, machine, write_result  # noqa: E402
from sft_throughput import trl_rows  # noqa: E402


def _ids(out) -> list[int]:
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def batch_of(tokenizer, rows: list[dict], max_length: int):
    """Prompt + completion per row (the chat template), right-padded; labels only on the completion."""
    import torch

    ids, labels = [], []
    for r in rows:
        p = _ids(tokenizer.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=True))
        seq = _ids(tokenizer.apply_chat_template(r["prompt"] + r["completion"], tokenize=True))[:max_length]
        ids.append(seq)
        labels.append(([-100] * len(p) + seq[len(p):])[:len(seq)])
    n = max(map(len, ids))
    pad = tokenizer.pad_token_id or 0
    return {"input_ids": torch.tensor([s + [pad] * (n - len(s)) for s in ids]),
            "attention_mask": torch.tensor([[1] * len(s) + [0] * (n - len(s)) for s in ids]),
            "labels": torch.tensor([s + [-100] * (n - len(s)) for s in labels])}


def main(argv=None) -> str:
    import torch
    import trl.trainer.utils as trl_utils
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fnsft.compat.trl import compact_lm_head_on_cpu
    from fnsft.models.builtin import materialize_builtin

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=[TINY, SMOLLM2])
    p.add_argument("--reps", type=int, default=6)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max_length", type=int, default=128)
    a = p.parse_args(argv)
    torch.set_num_threads(fnsft_threads())
    rows = trl_rows(os.path.join(REPO, "examples", "sample_data.jsonl"))[: a.batch]
    shipped = trl_utils._use_triton
    results: dict = {"settings": vars(a), "machine": machine(), "torch_threads": torch.get_num_threads()}
    for name in a.models:
        path = materialize_builtin(name)
        tok = AutoTokenizer.from_pretrained(path)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                 task_type="CAUSAL_LM"))
        trl_utils.add_fused_lm_head(model.get_base_model(), outputs=("log_probs", "entropy", "is_top1"))
        batch = batch_of(tok, rows, a.max_length)
        seconds: dict = {"trl_default": [], "labelled": []}
        for rep in range(a.reps + 1):  # the first round warms up and is not counted
            for side in (("trl_default", "labelled") if rep % 2 else ("labelled", "trl_default")):
                trl_utils._use_triton = shipped
                if side == "labelled":
                    assert compact_lm_head_on_cpu()
                model.zero_grad()
                t0 = time.perf_counter()
                model(**batch, fused_lm_head=True).loss.backward()
                if rep:
                    seconds[side].append(time.perf_counter() - t0)
        trl_utils._use_triton = shipped
        best = {k: min(v) for k, v in seconds.items()}
        med = {k: statistics.median(v) for k, v in seconds.items()}
        results[name] = {"seconds": seconds, "min_s": best, "median_s": med,
                         "labelled_fraction": round(float((batch["labels"][:, 1:] != -100).float().mean()), 3),
                         "saving_min": round(1 - best["labelled"] / best["trl_default"], 3),
                         "saving_median": round(1 - med["labelled"] / med["trl_default"], 3)}
        print(name, {k: v for k, v in results[name].items() if k != "seconds"}, flush=True)
    return write_result("lm_head_compact", results)


if __name__ == "__main__":
    main()
