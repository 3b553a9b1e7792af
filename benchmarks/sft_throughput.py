"""fnsft's SFT stage vs a plain TRL SFTTrainer: same model, data, length, batch and steps.

    python benchmarks/sft_throughput.py [--steps 12] [--modes lora full]

Writes benchmarks/results/sft_throughput.json. Both sides are measured by the same callback
(`fnsft.distributed.hf_worker.throughput_meter`): non-padding train tokens/s after 2 warm-up
steps. fnsft runs 1 Ray Train worker with all CPUs (the fair single-process comparison) with the
default ``deepspeed: {zero_stage: 2}``, which a lone worker runs as plain torch (ZeRO partitions
nothing there); its fixed start-up cost is the time from launching the stage's Train job to
the trainer's first step (worker start, model load, trainer set-up), plus Ray's own start.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import plain_training_args, run_fnsft_stage, write_result  # noqa: E402

MODEL = "builtin:smollm2-135m-instruct"
DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "sample_data.jsonl")


def rows(n: int):
    from fnsft.data.files import load_rows
    from fnsft.data.formats import to_prompt_completion

    return [to_prompt_completion(r, "alpaca") for r in load_rows(DATA).to_list()[:n]]


def run_trl(model_dir: str, mode: str, a) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from fnsft.distributed.hf_worker import throughput_meter

    torch.manual_seed(0)
    out = tempfile.mkdtemp(prefix="trl_sft_")
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    peft = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear",
                      task_type="CAUSAL_LM") if mode == "lora" else None
    cfg = SFTConfig(**plain_training_args(out, a.steps, a.batch, 2e-4), max_length=a.max_length)
    trainer = SFTTrainer(model=model, args=cfg, train_dataset=Dataset.from_list(rows(a.steps * a.batch)),
                         processing_class=tok, peft_config=peft)
    metrics: dict = {}
    trainer.add_callback(throughput_meter(metrics))
    t0 = time.time()
    trainer.train()
    metrics["wall_s"] = time.time() - t0
    shutil.rmtree(out, ignore_errors=True)
    return metrics


def run_fnsft(mode: str, a) -> dict:
    out = tempfile.mkdtemp(prefix="fnsft_sft_")
    data = os.path.join(out, "data.jsonl")
    with open(DATA) as src, open(data, "w") as dst:
        for i, line in enumerate(src):
            if i >= a.steps * a.batch:
                break
            dst.write(line)
    return run_fnsft_stage(MODEL, "sft", {
        "dataset_name_or_path": data, "max_steps": a.steps, "per_device_train_batch_size": a.batch,
        "learning_rate": 2e-4, "max_length": a.max_length, "eval_split": 0, "save_steps": 0,
        "save_intermediate": False, "report_to": ["none"], "use_peft": mode == "lora", "logging_steps": 1,
    }, out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max_length", type=int, default=128)
    p.add_argument("--modes", nargs="+", default=["lora", "full"])
    a = p.parse_args()

    import ray

    from fnsft.models.builtin import materialize_builtin

    model_dir = materialize_builtin(MODEL)
    t0 = time.time()
    ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", namespace="fnsft")
    ray_init_s = time.time() - t0
    results = {"settings": vars(a), "model": MODEL, "ray_init_s": round(ray_init_s, 2), "modes": {}}
    for mode in a.modes:
        fn = run_fnsft(mode, a)
        trl = run_trl(model_dir, mode, a)
        ratio = fn["train_tokens_per_second_steady"] / trl["train_tokens_per_second_steady"]
        results["modes"][mode] = {
            "trl_tokens_per_s": round(trl["train_tokens_per_second_steady"], 2),
            "fnsft_tokens_per_s": round(fn["train_tokens_per_second_steady"], 2),
            "ratio_fnsft_over_trl": round(ratio, 3),
            "trl_seconds_per_step": round(trl["seconds_per_step_steady"], 3),
            "fnsft_seconds_per_step": round(fn["seconds_per_step_steady"], 3),
            "fnsft_startup_s": round(fn["startup_s"], 2),
            "fnsft_stage_wall_s": round(fn["wall_s"], 2),
            "trl_train_wall_s": round(trl["wall_s"], 2),
            "goal_ratio_ge_0.9": ratio >= 0.9,
            "goal_startup_le_20s": fn["startup_s"] <= 20,
        }
    write_result("sft_throughput", results)


if __name__ == "__main__":
    main()
