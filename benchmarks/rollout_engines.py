"""HF ``generate`` vs vLLM's CPU build as the RL generation engine (``rl.generation.engine``):
generation tokens/s and the GRPO iteration time inside the RL stage, and vLLM's log-prob gap.

Run (from the repository root; needs vLLM's venv: ``bash scripts/setup_test_tools.sh``)::

    python benchmarks/rollout_engines.py                                          # SmolLM2-135M-Instruct, 3 rounds
    python benchmarks/rollout_engines.py --model builtin:tiny-llama-hd32 --steps 4 --rounds 1 --quick   # smoke run

Both sides run the same fnsft GRPO stage (examples/arithmetic prompts, the dense ``target_chars``
reward, float32, one Train worker, one generation actor with ``--generation-cpus``, no
reference); the only difference is ``generation.engine: hf`` or ``vllm``. Each round runs both
with the round's seed, the order alternating (round 0: hf first), so load drift on a shared
machine hits both; the **median** over rounds is reported with the min–max and every run.

- ``generation_tokens_per_s``: completion tokens generated (``response_length`` × rows) over the
  summed ``time/generation_s``, iterations after the first (the first pays warm-ups);
- ``seconds_per_iteration``: the mean ``time/iteration_s`` over the same iterations (rollout +
  update + weight push; vLLM's pushes reload the engine's weights);
- ``stage_seconds_total``: the whole stage, start-up included (vLLM's engine start is the
  difference that matters for short runs: why ``engine: auto`` stays HF on CPU);
- vLLM side: ``logprob_diff_mean``/``_max`` (behaviour vs learner old log-probs, mean over
  iterations / max) and ``weight_sync_mismatches`` (``verify_weight_sync`` is on for both sides);
- the CPU model (``lscpu``) and the load average before/after each run are recorded: compare
  ratios from one run of this script, never absolute times from different machines or days.

Writes benchmarks/results/rollout_engines_<model>.json (``..._quick.json`` with ``--quick``).
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
from async_rl import cpu_model  # noqa: E402
from common import RESULTS, machine, run_alternating  # noqa: E402
from fnsft.config.schema import RayConfig  # noqa: E402
from fnsft.runtime.ray_start import ensure_ray  # noqa: E402

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def stage_config(args, seed: int, engine: str, out_dir: str) -> dict:
    stage = {
        "dataset_name_or_path": os.path.join(REPO, "examples", "arithmetic", "train.jsonl"),
        "algorithm": "grpo", "num_iterations": args.steps, "prompts_per_iteration": args.prompts,
        "num_generations": args.num_generations, "max_new_tokens": args.max_new_tokens,
        "learning_rate": args.learning_rate, "kl_coef": 0.0, "temperature": 1.0,
        "rewards": [{"type": "target_chars", "chars": "the"}], "report_to": ["none"],
        "save_intermediate": False, "logging_steps": 10**6, "save_steps": 0, "seed": seed,
        "verify_weight_sync": True,
        "generation": {"num_cpus": args.generation_cpus, "engine": engine}, "reward": {"num_cpus": 0.25},
        "resources": {"num_workers": 1},
    }
    return {"model_name_or_path": args.model, "output_dir": out_dir, "stages": ["rl"], "torch_dtype": "float32",
            "deepspeed": {"enabled": False}, "save_final_model": False, "stage_configs": {"rl": stage}}


def run_once(args, seed: int, engine: str, out_dir: str) -> dict:
    from fnsft.pipeline.driver import Pipeline

    t0 = time.time()
    summary = Pipeline.from_dict(stage_config(args, seed, engine, out_dir)).run()
    total = time.time() - t0
    rl = summary["stages"]["rl"]
    with open(rl["artifacts"]["rl_history"]) as f:
        history = json.load(f)
    steady = history[1:] or history
    rows = args.prompts * args.num_generations
    tokens = sum(h["response_length"] * rows for h in steady)
    gen_s = sum(h["time/generation_s"] for h in steady)
    out = {
        "seed": seed, "iterations": len(history),
        "generation_tokens_per_s": round(tokens / gen_s, 2) if gen_s else None,
        "seconds_per_iteration": round(sum(h["time/iteration_s"] for h in steady) / len(steady), 3),
        "generation_seconds_per_iteration": round(gen_s / len(steady), 3),
        "stage_seconds_total": round(total, 1),
        "reward_first": history[0]["reward_mean"], "reward_last": history[-1]["reward_mean"],
        "weight_sync_mismatches": rl["metrics"].get("weight_sync_mismatches"),
    }
    if engine == "vllm":
        out["logprob_diff_mean"] = statistics.mean(h["rollout/logprob_diff_mean"] for h in history)
        out["logprob_diff_max"] = max(h["rollout/logprob_diff_max"] for h in history)
    return out


def summarize(runs: list[dict]) -> dict:
    out: dict = {}
    for key in ("generation_tokens_per_s", "seconds_per_iteration", "stage_seconds_total", "logprob_diff_max"):
        vals = [r[key] for r in runs if r.get(key) is not None]
        if vals:
            out[key] = {"median": round(statistics.median(vals), 4), "min": round(min(vals), 4),
                        "max": round(max(vals), 4)}
    out["runs"] = runs
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="builtin:smollm2-135m-instruct")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--num-generations", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--learning-rate", type=float, default=None, help="default: 1e-5 (SmolLM2), 3e-3 (tiny)")
    p.add_argument("--generation-cpus", type=float, default=1.0)
    p.add_argument("--rounds", type=int, default=3, help="hf and vllm alternate (hf first in round 0)")
    p.add_argument("--quick", action="store_true", help="a smoke run: writes ..._quick.json")
    p.add_argument("--work-dir", default="/tmp/fnsft_bench_rollout_engines")
    args = p.parse_args(argv)
    if args.learning_rate is None:
        args.learning_rate = 3e-3 if "tiny" in args.model else 1e-5
    from fnsft.actors.vllm_runtime import choose_engine
    from fnsft.models.builtin import materialize_builtin

    engine = choose_engine("vllm", materialize_builtin(args.model) if args.model.startswith("builtin:") else args.model,
                           use_gpu=False)  # one line and exit 2 when vLLM's venv is absent
    slug = args.model.split(":")[-1].split("/")[-1].split("-instruct")[0] + ("_quick" if args.quick else "")
    os.makedirs(args.work_dir, exist_ok=True)
    n = {"hf": 0, "vllm": 0}
    done: dict[str, list] = {"hf": [], "vllm": []}
    partial = os.path.join(RESULTS, f"rollout_engines_{slug}.partial.json")

    def side(name: str):
        def once() -> dict:
            seed = n[name]
            n[name] += 1
            out = run_once(args, seed, name, os.path.join(args.work_dir, f"{name}{seed}"))
            done[name].append({**out, "load_average_1min_after": round(os.getloadavg()[0], 1)})
            os.makedirs(RESULTS, exist_ok=True)
            with open(partial, "w") as f:  # every finished run kept, should a long run be stopped
                json.dump({"cpu_model": cpu_model(), "settings": vars(args), "runs": done}, f, indent=2)
            return out
        return once

    started = time.strftime("%Y-%m-%d %H:%M:%S")
    ensure_ray(RayConfig(num_cpus=(os.cpu_count() or 2) + math.ceil(args.generation_cpus + 0.25)))
    try:
        runs, order = run_alternating({"hf": side("hf"), "vllm": side("vllm")}, args.rounds,
                                      lambda m: f"{m['generation_tokens_per_s']} gen tokens/s, "
                                                f"{m['seconds_per_iteration']} s/iter, {m['stage_seconds_total']} s stage")
    finally:
        import ray

        ray.shutdown()
    hf, vllm = summarize(runs["hf"]), summarize(runs["vllm"])
    result = {
        "benchmark": f"rollout_engines_{slug}", "date": started, "cpu_model": cpu_model(), "machine": machine(),
        "vllm": engine.reason, "settings": {k: v for k, v in vars(args).items() if k != "work_dir"},
        "order": order, "hf": hf, "vllm_engine": vllm,
        "ratio_vllm_over_hf_generation_tokens_per_s": round(
            vllm["generation_tokens_per_s"]["median"] / hf["generation_tokens_per_s"]["median"], 3),
        "ratio_vllm_over_hf_seconds_per_iteration": round(
            vllm["seconds_per_iteration"]["median"] / hf["seconds_per_iteration"]["median"], 3),
    }
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"rollout_engines_{slug}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps({k: v for k, v in result.items() if k not in ("hf", "vllm_engine")}, indent=2))
    if os.path.exists(partial):
        os.remove(partial)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # a ConfigError (no vLLM venv) is one line, as the CLI prints it
        from fnsft.errors import FnsftError

        if isinstance(e, FnsftError):
            print(f"rollout_engines: {e}", file=sys.stderr)
            sys.exit(2)
        raise
