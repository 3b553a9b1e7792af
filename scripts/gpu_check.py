"""GPU smoke check of the precision policy: SFT (LoRA, full), DPO, GRPO and PPO on
SmolLM2-135M-Instruct in bf16, one worker in plain torch and, with 2+ GPUs, two workers under
ZeRO-2/3; GRPO with ``generation.engine: vllm`` where vLLM is installed. Prints one JSON document: per run the loss / reward movement, tokens/s, the peak GPU
memory seen (nvidia-smi, all processes) and the run's wall time. Runs under ~8 min on one GPU.

    bash scripts/gpu_check.sh                     # on a GPU machine; add --out FILE to save the JSON
    bash scripts/gpu_check.sh --dry               # CPU, tiny model, 2 steps each (the suite runs this)
    bash scripts/gpu_check.sh --only sft_lora,grpo
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


class PeakGpuMemory:
    """Polls ``nvidia-smi`` (every GPU, every process: Train workers and role actors) for the peak."""

    def __init__(self, period_s: float = 0.5):
        self.period_s, self.peak_mib, self._stop = period_s, None, threading.Event()
        self.available = shutil.which("nvidia-smi") is not None

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=10).stdout
                used = sum(float(x) for x in out.split())
                self.peak_mib = max(self.peak_mib or 0.0, used)
            except Exception:  # a transient nvidia-smi failure: keep polling
                pass
            self._stop.wait(self.period_s)

    def __enter__(self):
        if self.available:
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self.available:
            self._thread.join()


def _runs(dry: bool, gpus: int) -> dict[str, dict]:
    """name -> (stage, stage config overrides, resources, deepspeed)."""
    steps = 2 if dry else 30
    iters = 2 if dry else 8
    sft = {"dataset_name_or_path": os.path.join(REPO, "examples", "sample_data.jsonl"), "max_steps": steps,
           "per_device_train_batch_size": 4 if dry else 8, "max_length": 128, "eval_split": 0.1,
           "learning_rate": 2e-4, "save_steps": 0, "report_to": ["none"], "logging_steps": 1}
    dpo = {"preference_dataset_path": os.path.join(REPO, "examples", "preferences.jsonl"), "max_steps": steps,
           "per_device_train_batch_size": 4 if dry else 8, "max_length": 128, "max_prompt_length": 96,
           "eval_split": 0.2, "learning_rate": 5e-6 if not dry else 1e-3, "save_steps": 0, "report_to": ["none"],
           "logging_steps": 1}
    rl = {"dataset_name_or_path": os.path.join(REPO, "examples", "arithmetic", "train.jsonl"),
          "num_iterations": iters, "prompts_per_iteration": 4 if dry else 16, "num_generations": 4,
          "max_new_tokens": 8 if dry else 48, "learning_rate": 1e-5 if not dry else 3e-3, "kl_coef": 0.01,
          "rewards": [{"type": "target_chars", "chars": "0123456789"}], "report_to": ["none"],
          "generation": {"num_replicas": 1, "num_cpus": 1, "num_gpus": 0 if dry else 0.2}}
    one = {"num_workers": 1}
    runs = {
        "sft_lora": ("sft", {**sft, "use_peft": True, "learning_rate": 1e-3}, one, 2),
        "sft_full": ("sft", sft, one, 2),
        "dpo": ("dpo", dpo, one, 2),
        "grpo": ("rl", {**rl, "algorithm": "grpo"}, one, 2),
        "ppo": ("rl", {**rl, "algorithm": "ppo"}, one, 2),
    }
    if _vllm_usable(dry, gpus):  # the production rollout path: vLLM generation, engine checked every push
        runs["grpo_vllm"] = ("rl", {**rl, "algorithm": "grpo", "verify_weight_sync": True,
                                    "generation": {**rl["generation"], "engine": "vllm"}}, one, 2)
    if gpus >= 2:  # two workers: ZeRO partitions across them
        two = {"num_workers": 2}
        runs.update({
            "sft_full_zero2_2w": ("sft", sft, two, 2),
            "sft_full_zero3_2w": ("sft", sft, two, 3),
            "dpo_zero3_2w": ("dpo", dpo, two, 3),
            "grpo_zero2_2w": ("rl", {**rl, "algorithm": "grpo"}, two, 2),
        })
    return runs


def _vllm_usable(dry: bool, gpus: int) -> bool:
    """vLLM installed here (or its CPU build's venv) and able to serve the check's model."""
    from fnsft.actors.vllm_runtime import choose_engine
    from fnsft.errors import ConfigError
    from fnsft.models.builtin import materialize_builtin

    try:
        choose_engine("vllm", materialize_builtin("builtin:tiny-llama" if dry else "builtin:smollm2-135m-instruct"),
                      use_gpu=gpus > 0)
        return True
    except ConfigError:
        return False


def _movement(stage: str, m: dict) -> dict:
    """The numbers that show learning: held-out loss (SFT), reward margin/accuracy (DPO), reward (RL)."""
    keys = {"sft": ("before_eval_loss", "eval_loss", "train_loss"),
            "dpo": ("before_eval_loss", "eval_loss", "eval_rewards/accuracies", "eval_rewards/margins", "train_loss"),
            "rl": ("reward_start", "reward_end", "final_kl", "final_entropy", "final_kl_coef", "iterations",
                   "weight_sync_mismatches")}[stage]
    return {k: m[k] for k in keys if isinstance(m.get(k), (int, float))}


def run_one(name: str, stage: str, cfg: dict, resources: dict, zero: int, model: str, dtype: str,
            use_gpu: bool, out_root: str) -> dict:
    from fnsft.pipeline import Pipeline

    out = os.path.join(out_root, name)
    res = {**resources, "use_gpu": use_gpu}
    if not use_gpu:
        res["cpus_per_worker"] = 1
    pipeline = {"model_name_or_path": model, "output_dir": out, "stages": [stage], "torch_dtype": dtype,
                "resources": res, "deepspeed": {"zero_stage": zero}, "stage_configs": {stage: cfg},
                "save_final_model": False}
    t0 = time.time()
    row: dict = {"stage": stage, "workers": resources["num_workers"], "zero_stage": zero if resources["num_workers"] > 1 else None}
    with PeakGpuMemory() as mem:
        try:
            summary = Pipeline.from_dict(pipeline).run()
            m = summary["stages"][stage]["metrics"]
            row["status"] = "ok"
            row.update(_movement(stage, m))
            if stage == "rl":
                batch = cfg["prompts_per_iteration"] * cfg["num_generations"]
                if m.get("time/iteration_s_mean") and "final_response_length" in m:
                    row["generated_tokens_per_s"] = batch * m["final_response_length"] / m["time/iteration_s_mean"]
            else:
                row["train_tokens_per_s"] = m.get("train_tokens_per_second_steady")
        except Exception as e:  # report and go on: one broken path must not hide the others
            row.update(status="failed", error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    row["peak_gpu_memory_mib"] = mem.peak_mib
    row["wall_s"] = round(time.time() - t0, 1)
    shutil.rmtree(out, ignore_errors=True)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry", action="store_true", help="CPU, tiny model, 2 steps per run (the test suite's mode)")
    ap.add_argument("--only", default="", help="comma-separated run names (default: all that fit the hardware)")
    ap.add_argument("--dtype", default=None, help="torch_dtype (default: bfloat16; --dry: float32)")
    ap.add_argument("--out", default=None, help="also write the JSON here (e.g. benchmarks/results/gpu_check.json)")
    args = ap.parse_args(argv)

    import ray
    import torch

    gpus = 0 if args.dry else torch.cuda.device_count()
    if not args.dry and gpus == 0:
        print("gpu_check: no GPU visible (use --dry for the CPU smoke mode)", file=sys.stderr)
        return 2
    model = "builtin:tiny-llama" if args.dry else "builtin:smollm2-135m-instruct"
    dtype = args.dtype or ("float32" if args.dry else "bfloat16")
    runs = _runs(args.dry, gpus)
    if args.only:
        unknown = [n for n in args.only.split(",") if n not in runs]
        if unknown:
            print(f"gpu_check: --only {','.join(unknown)}: unknown (accepted: {', '.join(runs)})", file=sys.stderr)
            return 2
        runs = {n: runs[n] for n in args.only.split(",")}
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=max(4, os.cpu_count() or 4), include_dashboard=False,
                 _node_ip_address="127.0.0.1", log_to_driver=False)
    out_root = tempfile.mkdtemp(prefix="fnsft_gpu_check_")
    t0 = time.time()
    results = {name: run_one(name, stage, cfg, res, zero, model, dtype, not args.dry, out_root)
               for name, (stage, cfg, res, zero) in runs.items()}
    shutil.rmtree(out_root, ignore_errors=True)
    doc = {"check": "gpu_check", "dry": args.dry, "model": model, "torch_dtype": dtype, "gpus": gpus,
           "gpu": torch.cuda.get_device_name(0) if gpus else None, "torch": torch.__version__,
           "date": time.strftime("%Y-%m-%d %H:%M:%S"), "total_s": round(time.time() - t0, 1), "runs": results}
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0 if all(r["status"] == "ok" for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
