"""Shared pieces of the side-by-side benchmarks (fnsft stage vs the plain TRL trainer)."""

from __future__ import annotations

import json
import os
import platform
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")


def machine() -> dict:
    import torch

    return {"cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def write_result(name: str, data: dict) -> str:
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{name}.json")
    data = {"benchmark": name, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(), **data}
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
    print(json.dumps(data, indent=2))
    print(f"wrote {path}")
    return path


def plain_training_args(out_dir: str, steps: int, batch: int, lr: float) -> dict:
    """What a TRL user would pass, with the dtype chosen from the hardware (TRL defaults bf16=True)."""
    import torch

    on_gpu = torch.cuda.is_available()
    return dict(output_dir=out_dir, max_steps=steps, per_device_train_batch_size=batch, learning_rate=lr,
                logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
                bf16=on_gpu and torch.cuda.is_bf16_supported(), fp16=False, use_cpu=not on_gpu,
                include_num_input_tokens_seen="non_padding", seed=0)


def run_fnsft_stage(model: str, stage: str, stage_config: dict, out: str) -> dict:
    """Run one fnsft stage on 1 Ray Train worker with all CPUs (ZeRO-2 configured: plain torch
    on one worker); its metrics plus
    ``startup_s`` (Train job launch -> first step), ``wall_s`` and ``stage_s``."""
    import shutil

    from fnsft.pipeline import Pipeline

    cfg = {
        "model_name_or_path": model, "output_dir": out, "stages": [stage],
        "resources": {"num_workers": 1, "cpus_per_worker": os.cpu_count()},
        "deepspeed": {"zero_stage": 2},
        "stage_configs": {stage: stage_config},
    }
    t0 = time.time()
    summary = Pipeline.from_dict(cfg).run()
    wall = time.time() - t0
    result = summary["stages"][stage]
    m = result["metrics"]
    launched = t0 + (wall - result["seconds"])  # when the stage (its Train job) started
    m["startup_s"] = m["train_begin_unix"] - launched
    m["wall_s"] = wall
    m["stage_s"] = result["seconds"]
    shutil.rmtree(out, ignore_errors=True)
    return m
