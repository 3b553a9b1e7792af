"""Synchronous vs asynchronous rollouts (``rl.async_rollout``): GRPO iterations per second and the
final held-out reward, same settings on both sides.

Run (from the repository root)::

    python benchmarks/async_rl.py --model builtin:tiny-llama --steps 12          # ≈6 min, 3 rounds
    python benchmarks/async_rl.py                                               # SmolLM2-135M-Instruct
    python benchmarks/async_rl.py --model builtin:tiny-llama --steps 4 --rounds 1 --quick   # smoke run

Both sides run the same fnsft GRPO stage (examples/arithmetic prompts, the dense ``target_chars``
reward on "the", float32, one Train worker, one generation actor, no reference); the only
difference is ``async_rollout: {enabled: true, max_staleness: 1}`` with truncated IS
(``behavior_correction: {type: tis, cap: 2}``) on the async side. Each round runs both sides
with the round's seed, the order alternating (round 0: sync first), so load drift on a shared
machine hits both; the **median** over rounds is reported with the min–max and every run.

- ``iterations_per_s``: iterations after the first (warm-up) one, divided by their summed
  ``time/iteration_s`` (rollout wait + update + weight push: the loop's wall time without the
  start-up and the evaluations).
- ``eval_reward_end``: greedy reward on the first ``--eval-prompts`` held-out prompts
  (examples/arithmetic/eval.jsonl) after the last iteration; ``eval_reward_start`` before.
- The CPU model (``lscpu``), the load average before/after each run, the generation actor's CPUs
  and the learner's torch threads are recorded: compare ratios from one run
  of this script, never absolute times from different machines or days (FACTS.md).

Writes benchmarks/results/async_rl_<model>.json (``..._quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)
from common import RESULTS, cpu_model as cpu_flags, first_lines, machine, run_alternating  # noqa: E402
from fnsft.config.schema import RayConfig  # noqa: E402
from fnsft.runtime.ray_start import ensure_ray  # noqa: E402

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def cpu_model() -> str:
    """The CPU's model name (common.cpu_model's, as a string: this JSON's field)."""
    return cpu_flags()["cpu_model"] or "unknown"


def stage_config(args, seed: int, use_async: bool, eval_path: str) -> dict:
    stage = {
        "dataset_name_or_path": os.path.join(REPO, "examples", "arithmetic", "train.jsonl"),
        "algorithm": "grpo", "num_iterations": args.steps, "prompts_per_iteration": args.prompts,
        "num_generations": args.num_generations, "max_new_tokens": args.max_new_tokens,
        "learning_rate": args.learning_rate, "kl_coef": 0.0,
        "rewards": [{"type": "target_chars", "chars": "the"}], "report_to": ["none"],
        "save_intermediate": False, "logging_steps": 10**6, "save_steps": 0, "seed": seed,
        "eval_dataset_path": eval_path,
        "generation": {"num_cpus": args.generation_cpus}, "reward": {"num_cpus": 0.25},
        "resources": {"num_workers": 1},
    }
    if args.learner_cpus:
        stage["resources"]["cpus_per_worker"] = args.learner_cpus
    if use_async:
        stage["async_rollout"] = {"enabled": True, "max_staleness": args.max_staleness}
        stage["behavior_correction"] = {"type": "tis", "cap": 2.0}
    return {"model_name_or_path": args.model, "output_dir": "", "stages": ["rl"], "torch_dtype": "float32",
            "deepspeed": {"enabled": False}, "stage_configs": {"rl": stage}}


def run_once(args, seed: int, use_async: bool, out_dir: str, eval_path: str) -> dict:
    """One stage run in the script's Ray (its role actors and Train job end with the stage)."""
    from fnsft.pipeline.driver import Pipeline

    cfg = stage_config(args, seed, use_async, eval_path)
    cfg["output_dir"] = out_dir
    t0 = time.time()
    summary = Pipeline.from_dict(cfg).run()
    total = time.time() - t0
    rl = summary["stages"]["rl"]
    with open(rl["artifacts"]["rl_history"]) as f:
        history = json.load(f)
    steady = history[1:] or history
    seconds = sum(h["time/iteration_s"] for h in steady)
    m = rl["metrics"]
    out = {
        "seed": seed, "iterations": len(history), "iterations_per_s": round(len(steady) / seconds, 4),
        "seconds_per_iteration": round(seconds / len(steady), 4),
        "eval_reward_start": m.get("eval_reward_start"), "eval_reward_end": m.get("eval_reward_end"),
        "reward_first": history[0]["reward_mean"], "reward_last": history[-1]["reward_mean"],
        "time_split_seconds": {k: round(sum(h.get(f"time/{k}_s", 0.0) for h in steady) / len(steady), 4)
                               for k in ("generation", "scoring", "training", "weight_sync")},
        "stage_seconds_total": round(total, 2), "torch_threads": m.get("torch_threads"),
    }
    if use_async:
        out["staleness_max"] = m.get("rollout_staleness_max")
        out["is_clipped_share_mean"] = round(statistics.mean(h["rollout/is_clipped_share"] for h in history), 4)
    return out


def summarize(runs: list[dict]) -> dict:
    """Median with min–max of the headline figures, every run beside them."""
    out: dict = {}
    for key in ("iterations_per_s", "eval_reward_end", "eval_reward_start"):
        vals = [r[key] for r in runs if r.get(key) is not None]
        if vals:
            out[key] = {"median": round(statistics.median(vals), 4), "min": round(min(vals), 4),
                        "max": round(max(vals), 4)}
    out["runs"] = runs
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="builtin:smollm2-135m-instruct")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--num-generations", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--learning-rate", type=float, default=None, help="default: 1e-5 (SmolLM2), 3e-3 (tiny)")
    p.add_argument("--max-staleness", type=int, default=1)
    p.add_argument("--generation-cpus", type=float, default=1.0)
    p.add_argument("--learner-cpus", type=int, default=0, help="0: auto (the machine's CPUs split between the workers)")
    p.add_argument("--eval-prompts", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3, help="sync and async alternate (sync first in round 0)")
    p.add_argument("--quick", action="store_true", help="a smoke run: writes ..._quick.json")
    p.add_argument("--work-dir", default="/tmp/fnsft_bench_async_rl")
    args = p.parse_args(argv)
    tiny = "tiny" in args.model
    if args.learning_rate is None:
        args.learning_rate = 3e-3 if tiny else 1e-5
    slug = args.model.split(":")[-1].split("/")[-1].split("-instruct")[0] + ("_quick" if args.quick else "")
    os.makedirs(args.work_dir, exist_ok=True)
    eval_path = first_lines(os.path.join(REPO, "examples", "arithmetic", "eval.jsonl"),
                            os.path.join(args.work_dir, "eval.jsonl"), args.eval_prompts)
    n = {"sync": 0, "async": 0}

    def side(name: str):
        def once() -> dict:
            seed = n[name]  # round r: both sides run seed r
            n[name] += 1
            return run_once(args, seed, name == "async", os.path.join(args.work_dir, f"{name}{seed}"), eval_path)
        return once

    started = time.strftime("%Y-%m-%d %H:%M:%S")
    # One local Ray for every run: the machine's cores plus the role actors' CPUs, as a run that
    # starts its own Ray reserves them (fnsft.runtime.ray_start).
    t0 = time.time()
    for attempt in range(5):  # a loaded shared machine can miss Ray's start-up deadline: try again
        try:
            ensure_ray(RayConfig(num_cpus=(os.cpu_count() or 2) + math.ceil(args.generation_cpus + 0.25)))
            break
        except Exception as e:  # Ray raises a bare Exception for a node that did not come up
            if attempt == 4:
                raise
            print(f"Ray did not start ({e}); retrying", flush=True)
            time.sleep(10)
    ray_start_s = round(time.time() - t0, 2)
    try:
        runs, order = run_alternating({"sync": side("sync"), "async": side("async")}, args.rounds,
                                      lambda m: f"{m['iterations_per_s']:.3f} it/s, eval reward {m['eval_reward_end']}")
    finally:
        import ray

        ray.shutdown()
    sync, asyn = summarize(runs["sync"]), summarize(runs["async"])
    result = {
        "benchmark": f"async_rl_{slug}", "date": started, "cpu_model": cpu_model(), "machine": machine(),
        "settings": {k: v for k, v in vars(args).items() if k != "work_dir"}, "order": order,
        "ray_start_s": ray_start_s,
        "sync": sync, "async": asyn,
        "ratio_async_over_sync_iterations_per_s": round(
            asyn["iterations_per_s"]["median"] / sync["iterations_per_s"]["median"], 3),
    }
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"async_rl_{slug}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps({k: v for k, v in result.items() if k not in ("sync", "async")}, indent=2))
    print(f"sync {sync['iterations_per_s']} | async {asyn['iterations_per_s']}\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
