"""TRL's fused LM head on CPU, fnsft with vs without its compaction: every position (TRL as
shipped) vs labelled positions only (fnsft.compat.trl.compact_lm_head_on_cpu, what fnsft's
training workers apply), timed on a training step's forward and backward.

    python benchmarks/lm_head_compact.py                         # SmolLM2-135M and tiny-llama, 3 reps
    python benchmarks/lm_head_compact.py --models builtin:tiny-llama --reps 4

The model as fnsft's SFT stage trains it with TRL here (LoRA r16 on all linear layers, fp32,
TRL's fused LM head), one batch of the shipped data (8 rows, ``max_length`` 128, prompt and
padding unlabelled, as TRL's completion-only loss masks them). Nothing else differs between the
two sides: the same model object, batch and threads; the compaction is switched on and off
around each step (common.trl_lm_head, the switch sft_throughput.py and dpo_throughput.py use).
After one uncounted warm-up round, the two sides alternate, the order swapping each repetition
(``--reps``, default 3). Per model and side: median, min and max seconds (``seconds_spread``),
every repetition's load average before and after, and the CPU model (``machine``). The result
is rewritten after each model, so a cut-short run keeps the models it finished.
Writes benchmarks/results/lm_head_compact.json.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import REPO, SMOLLM2, TINY, fnsft_threads, spread, trl_lm_head, write_result  # noqa: E402
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


def load() -> float:
    return round(os.getloadavg()[0], 1)


def main(argv=None) -> str:
    import torch
    import trl.trainer.utils as trl_utils
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fnsft.models.builtin import materialize_builtin

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=[SMOLLM2, TINY])
    p.add_argument("--reps", type=int, default=3, help="counted repetitions per side (after one warm-up round)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max_length", type=int, default=128)
    a = p.parse_args(argv)
    torch.set_num_threads(fnsft_threads())
    rows = trl_rows(os.path.join(REPO, "examples", "sample_data.jsonl"))[: a.batch]
    results: dict = {"settings": vars(a), "torch_threads": torch.get_num_threads(),
                     "load_average_1min": [load(), None]}
    path = ""
    for name in a.models:
        model_path = materialize_builtin(name)
        tok = AutoTokenizer.from_pretrained(model_path)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                 task_type="CAUSAL_LM"))
        trl_utils.add_fused_lm_head(model.get_base_model(), outputs=("log_probs", "entropy", "is_top1"))
        batch = batch_of(tok, rows, a.max_length)
        seconds: dict = {"trl_default": [], "labelled": []}
        loads, order = [], []
        for rep in range(a.reps + 1):  # the first round warms up and is not counted
            before = load()
            sides = ("trl_default", "labelled") if rep % 2 else ("labelled", "trl_default")
            for side in sides:
                with trl_lm_head(compact=side == "labelled") as head:
                    # the compaction took (TRL in the checked range), or is off
                    assert head == side.replace("_", " "), (head, side)
                    model.zero_grad()
                    t0 = time.perf_counter()
                    model(**batch, fused_lm_head=True).loss.backward()
                    took = time.perf_counter() - t0
                if rep:
                    seconds[side].append(took)
            if rep:
                loads.append([before, load()])
                order.append(list(sides))
        stats = {k: spread(v) for k, v in seconds.items()}
        results[name] = {"seconds": seconds, "seconds_spread": stats, "order": order, "load_average_1min": loads,
                         "labelled_fraction": round(float((batch["labels"][:, 1:] != -100).float().mean()), 3),
                         "saving_min": round(1 - stats["labelled"]["min"] / stats["trl_default"]["min"], 3),
                         "saving_median": round(1 - stats["labelled"]["median"] / stats["trl_default"]["median"], 3),
                         "saving_max": round(1 - stats["labelled"]["max"] / stats["trl_default"]["max"], 3)}
        print(name, {k: v for k, v in results[name].items() if k != "seconds"}, flush=True)
        results["load_average_1min"][1] = load()
        results["models_done"] = [m for m in a.models if m in results]
        path = write_result("lm_head_compact", results)  # after each model: a cut-short run keeps these
    return path

if __name__ == "__main__":
    main()
