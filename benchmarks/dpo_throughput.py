"""fnsft's DPO stage vs a plain TRL DPOTrainer: same model, pairs, length, batch, LoRA and steps.

    python benchmarks/dpo_throughput.py [--steps 12] [--batch 4] [--max_length 128] [--rounds 2]

Writes benchmarks/results/dpo_throughput.json. Both sides train SmolLM2-135M-Instruct with LoRA
(r=16, all linear layers; the reference is the adapter-disabled base in both) with the sigmoid
loss on the same chat-formatted pairs from examples/preferences.jsonl, and are measured by the
same callback (`fnsft.distributed.hf_worker.throughput_meter`): steady-state optimizer steps/s
after 2 warm-up steps, times the pairs per step. Each side runs ``--rounds`` times in ABBA order
(fnsft, trl, trl, fnsft: a shared machine's load drifts) and the best runs are compared. fnsft runs
1 Ray Train worker holding all CPUs (the fair single-process comparison) with the default
``deepspeed: {zero_stage: 2}``, which a lone worker runs as plain torch (ZeRO partitions nothing
there; ``deepspeed.on_single_worker`` would force it), with no eval split (so no evaluation runs inside the timed loop) and its worker at the TRL
process's CPU priority (``RAY_worker_niceness=0``; Ray's default, 15, loses CPU to anything else
running on a shared machine). fnsft's fixed start-up cost is the time from launching the stage's
Train job to the trainer's first step (worker start, model load, trainer set-up), plus Ray's
own start.
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
DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "preferences.jsonl")
LR = 5e-5
BETA = 0.1


def write_pairs(path: str, n: int) -> str:
    with open(DATA) as src, open(path, "w") as dst:
        for i, line in enumerate(src):
            if i >= n:
                break
            dst.write(line)
    return path


def stage_config(data: str, a) -> dict:
    return {
        "preference_dataset_path": data, "loss_type": "sigmoid", "beta": BETA, "learning_rate": LR,
        "max_steps": a.steps, "per_device_train_batch_size": a.batch, "max_length": a.max_length,
        "eval_split": 0, "save_steps": 0, "save_intermediate": False, "report_to": ["none"],
        "use_peft": True, "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "logging_steps": 1,
    }


def trainer_rows(data: str, a, tokenizer) -> list[dict]:
    """The pairs exactly as the fnsft stage hands them to its workers."""
    from fnsft.pipeline.plan import build_plan

    plan = build_plan(data={"model_name_or_path": MODEL, "output_dir": tempfile.mkdtemp(prefix="dpo_plan_"),
                            "stages": ["dpo"], "stage_configs": {"dpo": stage_config(data, a)}})
    return plan.stages[0].stage.prepare_data(tokenizer)[0]["train"]


def run_trl(model_dir: str, data: str, a) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from fnsft.distributed.hf_worker import throughput_meter

    torch.manual_seed(0)
    out = tempfile.mkdtemp(prefix="trl_dpo_")
    tok = AutoTokenizer.from_pretrained(model_dir)
    t0 = time.time()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    peft = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")
    cfg = DPOConfig(**plain_training_args(out, a.steps, a.batch, LR), max_length=a.max_length, beta=BETA,
                    loss_type=["sigmoid"])
    trainer = DPOTrainer(model=model, args=cfg, train_dataset=Dataset.from_list(trainer_rows(data, a, tok)),
                         processing_class=tok, peft_config=peft)
    metrics: dict = {}
    trainer.add_callback(throughput_meter(metrics))
    trainer.train()
    metrics["startup_s"] = metrics["train_begin_unix"] - t0
    metrics["wall_s"] = time.time() - t0
    metrics["torch_threads"] = torch.get_num_threads()
    shutil.rmtree(out, ignore_errors=True)
    return metrics


def run_fnsft(data: str, a) -> dict:
    return run_fnsft_stage(MODEL, "dpo", stage_config(data, a), tempfile.mkdtemp(prefix="fnsft_dpo_"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--batch", type=int, default=4, help="pairs per step")
    p.add_argument("--max_length", type=int, default=128)
    p.add_argument("--rounds", type=int, default=2,
                   help="runs per side, in ABBA order (fnsft, trl, trl, fnsft, ...) so load drift cancels")
    a = p.parse_args()

    import ray

    from fnsft.models.builtin import materialize_builtin

    model_dir = materialize_builtin(MODEL)
    data = write_pairs(os.path.join(tempfile.mkdtemp(prefix="dpo_pairs_"), "pairs.jsonl"), a.steps * a.batch)
    # Ray starts its workers at nice 15; on a shared machine that alone slows the fnsft worker
    # against the plain (nice 0) TRL process. Same priority on both sides.
    os.environ.setdefault("RAY_worker_niceness", "0")
    t0 = time.time()
    ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", namespace="fnsft")
    ray_init_s = time.time() - t0
    order = [side for i in range(a.rounds) for side in (("fnsft", "trl") if i % 2 == 0 else ("trl", "fnsft"))]
    runs: dict[str, list[dict]] = {"fnsft": [], "trl": []}
    for side in order:
        load = os.getloadavg()[0]
        m = run_fnsft(data, a) if side == "fnsft" else run_trl(model_dir, data, a)
        m["load_average_1min"] = [round(load, 1), round(os.getloadavg()[0], 1)]
        m["pairs_per_s"] = m["train_steps_per_second_steady"] * a.batch  # 1 worker, no gradient accumulation
        runs[side].append(m)

    # Best of the rounds (as timeit does): other work on the machine only ever slows a run down.
    best = {side: max(rs, key=lambda r: r["pairs_per_s"]) for side, rs in runs.items()}

    def mean(side: str, key: str) -> float:
        return sum(r[key] for r in runs[side]) / len(runs[side])

    ratio = best["fnsft"]["pairs_per_s"] / best["trl"]["pairs_per_s"]
    results = {
        "settings": {**vars(a), "pairs": a.steps * a.batch, "lora": "r=16 alpha=32 all-linear", "loss": "sigmoid",
                     "beta": BETA, "learning_rate": LR, "fnsft": "1 Ray Train worker with all CPUs (zero_stage 2 configured; one worker: plain torch)",
                     "trl": "DPOTrainer in this process, no DeepSpeed", "warmup_steps_excluded": 2,
                     "order": order, "ray_worker_niceness": os.environ["RAY_worker_niceness"]},
        "model": MODEL,
        "ray_init_s": round(ray_init_s, 2),
        "trl_pairs_per_s": round(best["trl"]["pairs_per_s"], 3),
        "fnsft_pairs_per_s": round(best["fnsft"]["pairs_per_s"], 3),
        "ratio_fnsft_over_trl": round(ratio, 3),
        "ratio_of_means": round(mean("fnsft", "pairs_per_s") / mean("trl", "pairs_per_s"), 3),
        "trl_seconds_per_step": round(best["trl"]["seconds_per_step_steady"], 3),
        "fnsft_seconds_per_step": round(best["fnsft"]["seconds_per_step_steady"], 3),
        "fnsft_startup_s": round(min(r["startup_s"] for r in runs["fnsft"]), 2),
        "trl_startup_s": round(min(r["startup_s"] for r in runs["trl"]), 2),
        "fnsft_stage_wall_s": round(min(r["stage_s"] for r in runs["fnsft"]), 2),
        "trl_wall_s": round(min(r["wall_s"] for r in runs["trl"]), 2),
        "trl_torch_threads": runs["trl"][0]["torch_threads"],
        "runs": {side: [{"pairs_per_s": round(r["pairs_per_s"], 3),
                         "seconds_per_step": round(r["seconds_per_step_steady"], 3),
                         "startup_s": round(r["startup_s"], 2), "load_average_1min": r["load_average_1min"]}
                        for r in rs] for side, rs in runs.items()},
        "goal_ratio_ge_0.9": ratio >= 0.9,
    }
    write_result("dpo_throughput", results)


if __name__ == "__main__":
    main()
