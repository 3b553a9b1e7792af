"""Shared pieces of the side-by-side benchmarks (fnsft stage vs the plain TRL trainer).

How a comparison is run (benchmarks/sft_throughput.py, benchmarks/dpo_throughput.py):

- fnsft and TRL in one script run, in alternating order (round 0: fnsft then TRL, round 1: TRL
  then fnsft, ...) so a shared machine's load drift hits both; the **median** over rounds is
  reported (with the runs beside it).
- Both measured by the same callback (:func:`fnsft.workers.stats.throughput_meter`):
  useful (non-padding) tokens/s after the warm-up steps, which are excluded; also the same
  figure over all steps (the same examples on both sides, whatever their order).
- The TRL process runs as many torch threads as the fnsft worker.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import time
from typing import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RESULTS = os.environ.get("FNSFT_BENCHMARK_RESULTS") or os.path.join(HERE, "results")  # tests write elsewhere
SMOLLM2 = "builtin:smollm2-135m-instruct"
TINY = "builtin:tiny-llama"


def cpu_model() -> dict:
    """The CPU's model name and whether it has AMX-BF16 / AVX-512-BF16 (what ``torch_dtype: auto``
    and bf16 speed depend on): figures from different CPUs are not comparable."""
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return {"cpu_model": platform.processor() or None}
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), None)
    flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), [])
    return {"cpu_model": name, "amx_bf16": "amx_bf16" in flags, "avx512_bf16": "avx512_bf16" in flags}


def machine() -> dict:
    import torch

    return {**cpu_model(), "cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "load_average_1min": round(os.getloadavg()[0], 1),
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


def fnsft_threads() -> int:
    """Torch threads of a lone fnsft worker holding all CPUs (the TRL side runs the same)."""
    from fnsft.runtime.placement import torch_threads

    return torch_threads(os.cpu_count())


def plain_training_args(out_dir: str, steps: int, batch: int, lr: float, sampling: str = "random") -> dict:
    """Equal settings on the TRL side: fp32 (TRL defaults bf16=True, even on CPU), no gradient
    checkpointing (TRL defaults it on; fnsft off), the same sampler as fnsft, no checkpoints,
    non-padding tokens counted."""
    import torch

    on_gpu = torch.cuda.is_available()
    return dict(output_dir=out_dir, max_steps=steps, per_device_train_batch_size=batch, learning_rate=lr,
                logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
                bf16=False, fp16=False, gradient_checkpointing=False, use_cpu=not on_gpu,
                train_sampling_strategy=sampling,
                include_num_input_tokens_seen="non_padding", seed=0)


def default_training_args(out_dir: str, steps: int, batch: int) -> dict:
    """What a TRL user passes for the same workload, everything else TRL's default (bf16=True)."""
    import torch

    return dict(output_dir=out_dir, max_steps=steps, per_device_train_batch_size=batch, report_to="none",
                save_strategy="no", disable_tqdm=True, use_cpu=not torch.cuda.is_available(),
                include_num_input_tokens_seen="non_padding")


def first_lines(src: str, dst: str, n: int) -> str:
    with open(src) as f, open(dst, "w") as out:
        for i, line in enumerate(f):
            if i >= n:
                break
            out.write(line)
    return dst


def run_trl_trainer(trainer, warmup: int = 2) -> dict:
    """Train a built TRL trainer with the shared meter; the figures the report compares."""
    import torch

    from fnsft.workers.stats import throughput_meter

    metrics: dict = {}
    trainer.add_callback(throughput_meter(metrics, warmup_steps=warmup))
    t0 = time.time()
    trainer.train()
    metrics["train_s"] = time.time() - t0
    metrics["useful_tokens_per_s_all_steps"] = metrics["useful_tokens_per_second"]
    metrics["torch_threads"] = torch.get_num_threads()
    return metrics


def run_fnsft_stage(model: str, stage: str, stage_config: dict, out: str, resources: dict | None = None,
                    deepspeed: dict | None = None, torch_dtype: str | None = None) -> dict:
    """Run one fnsft stage (``resources``/``deepspeed``/``torch_dtype`` None: fnsft's defaults); its
    metrics plus ``startup_s`` (stage start -> first step), ``stage_s``."""
    import shutil

    from fnsft.pipeline import Pipeline

    cfg = {"model_name_or_path": model, "output_dir": out, "stages": [stage],
           "stage_configs": {stage: stage_config}}
    if resources is not None:
        cfg["resources"] = resources
    if deepspeed is not None:
        cfg["deepspeed"] = deepspeed
    if torch_dtype is not None:
        cfg["torch_dtype"] = torch_dtype
    t0 = time.time()
    summary = Pipeline.from_dict(cfg).run()
    wall = time.time() - t0
    result = summary["stages"][stage]
    m = result["metrics"]
    launched = t0 + (wall - result["seconds"])  # when the stage (its Train job) started
    m["startup_s"] = m["train_begin_unix"] - launched
    m["stage_s"] = result["seconds"]
    m["useful_tokens_per_s_all_steps"] = m["useful_tokens_per_second"]
    shutil.rmtree(out, ignore_errors=True)
    return m


KEEP = ("train_tokens_per_second_steady", "useful_tokens_per_s_all_steps", "seconds_per_step_steady",
        "startup_s", "stage_s", "train_s", "torch_threads", "worker_peak_rss_mb", "driver_peak_rss_mb", "batching")


def spread(values) -> dict:
    """Median, min and max of one figure over the rounds (what the README quotes)."""
    values = [v for v in values if v is not None]
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": round(statistics.median(values), 4), "min": round(min(values), 4),
            "max": round(max(values), 4), "n": len(values)}


def run_alternating(sides: dict[str, Callable[[], dict]], rounds: int,
                    show: Callable[[dict], str]) -> tuple[dict[str, list[dict]], list[str]]:
    """Run each side ``rounds`` times, the order alternating each round (the first side first in
    round 0); every run's metrics get the load average before and after. Returns the runs per
    side and the order they ran in."""
    names = list(sides)
    runs: dict[str, list[dict]] = {n: [] for n in names}
    order = []
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            load = os.getloadavg()[0]
            m = sides[name]()
            m["load_average_1min"] = [round(load, 1), round(os.getloadavg()[0], 1)]
            runs[name].append(m)
            order.append(name)
            print(f"  {name}: {show(m)}", flush=True)
    return runs, order


def alternate(sides: dict[str, Callable[[], dict]], rounds: int) -> dict:
    """:func:`run_alternating`, then the median of each side's useful tokens/s and the ratio of
    the first side over the second."""
    names = list(sides)
    runs, order = run_alternating(sides, rounds, lambda m: f"{m['train_tokens_per_second_steady']:.1f} useful tokens/s")

    def median(name: str, key: str) -> float:
        return round(statistics.median(r[key] for r in runs[name] if key in r), 3)

    out = {"order": order}
    for name in names:
        out[name] = {"useful_tokens_per_s": median(name, "train_tokens_per_second_steady"),
                     "useful_tokens_per_s_spread": spread(r.get("train_tokens_per_second_steady") for r in runs[name]),
                     "useful_tokens_per_s_all_steps": median(name, "useful_tokens_per_s_all_steps"),
                     "seconds_per_step": median(name, "seconds_per_step_steady"),
                     "runs": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()
                               if k in KEEP or k == "load_average_1min"} for r in runs[name]]}
    if len(names) == 2:
        a, b = names
        out[f"ratio_{a}_over_{b}"] = round(out[a]["useful_tokens_per_s"] / out[b]["useful_tokens_per_s"], 3)
        out[f"ratio_{a}_over_{b}_all_steps"] = round(
            out[a]["useful_tokens_per_s_all_steps"] / out[b]["useful_tokens_per_s_all_steps"], 3)
    return out


def start_ray():
    """One Ray for the whole script, started as a user's local run starts it
    (:func:`fnsft.runtime.ray_start.ensure_ray`: workers at the driver's priority, Train jobs
    without Ray Train's cluster-only helpers), so the fnsft side is measured as users get it."""
    from fnsft.config.schema import RayConfig
    from fnsft.runtime.ray_start import ensure_ray

    t0 = time.time()
    ensure_ray(RayConfig())
    return round(time.time() - t0, 2)


def compare(results: dict, only: list[str], rounds: int, run_fnsft: Callable[..., dict],
            run_trl: Callable[[bool], dict]) -> dict:
    """The three comparisons of the SFT/DPO benchmarks, each alternating its sides for ``rounds``:
    ``equal`` settings, each tool's ``defaults``, and ``zero2`` (2 workers vs 1, same global batch).
    ``run_fnsft(defaults, workers=1)`` and ``run_trl(defaults)`` run one side once."""
    if "equal" in only:
        print("equal settings", flush=True)
        results["equal"] = alternate({"fnsft": lambda: run_fnsft(False), "trl": lambda: run_trl(False)}, rounds)
    if "defaults" in only:
        print("each tool's defaults", flush=True)
        results["defaults"] = alternate({"fnsft": lambda: run_fnsft(True), "trl": lambda: run_trl(True)}, rounds)
    if "zero2" in only:
        print("2 workers ZeRO-2 vs 1 worker, same global batch", flush=True)
        results["zero2"] = alternate({"fnsft_2_workers_zero2": lambda: run_fnsft(False, workers=2),
                                      "fnsft_1_worker": lambda: run_fnsft(False)}, rounds)
    for name in COMPARISONS:
        if name in only:
            results[name]["date"] = time.strftime("%Y-%m-%d %H:%M:%S")
            results[name]["settings"] = {k: results["settings"][k] for k in ("steps", "batch", "max_length", "rounds")}
    return results


COMPARISONS = ("equal", "defaults", "zero2")


def keep_earlier(results: dict, name: str, only: list[str]) -> None:
    """Comparisons left out of ``--only`` keep their results (with their date and settings) from
    the earlier ``results/<name>.json``, so one comparison can be rerun alone."""
    path = os.path.join(RESULTS, f"{name}.json")
    if not os.path.exists(path):
        return
    with open(path) as f:
        earlier = json.load(f)
    if earlier.get("model") != results.get("model"):
        return
    for key in COMPARISONS:
        if key not in only and key in earlier:
            results[key] = {**earlier[key], "date": earlier[key].get("date", earlier.get("date")),
                            "settings": earlier[key].get("settings", earlier.get("settings"))}


def parse_throughput_args(argv, description: str, batch: int, steps_help: str, batch_help: str, steps: int = 8):
    """The SFT/DPO benchmarks' command line; ``--quick``: the tiny model, a few steps (checks the script runs)."""
    import argparse

    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", default=SMOLLM2)
    p.add_argument("--steps", type=int, default=steps, help=steps_help)
    p.add_argument("--batch", type=int, default=batch, help=batch_help)
    p.add_argument("--max_length", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--only", nargs="+", default=["equal", "defaults", "zero2"])
    p.add_argument("--quick", action="store_true", help="the tiny model, few steps: checks the script runs")
    a = p.parse_args(argv)
    if a.quick:
        a.model, a.steps, a.batch, a.max_length = TINY, 5, 4, 64
    return a


@contextlib.contextmanager
def trl_lm_head(compact: bool):
    """TRL's fused LM head as fnsft's training workers run it (``compact``: only labelled positions
    projected on CPU, :func:`fnsft.compat.trl.compact_lm_head_on_cpu`) or as TRL ships it, TRL's
    choice put back on exit. Yields what the head does, as fnsft's metric ``lm_head_positions``
    names it (``labelled`` / ``trl default``)."""
    from fnsft.compat.trl import lm_head_choice

    with lm_head_choice(compact) as on:
        yield "labelled" if on else "trl default"
