"""fnsft GRPO vs TRL's GRPOTrainer: seconds per iteration on the same model, prompts and settings.

Run (from the repository root)::

    python benchmarks/grpo_vs_trl.py                                # SmolLM2-135M-Instruct, 3 rounds, ≈10 min
    python benchmarks/grpo_vs_trl.py --model builtin:tiny-llama --steps 8   # framework overhead, ≈6 min

Both run in this one process (fnsft's roles and Train worker are Ray processes it starts):
the same prompts (examples/arithmetic), chat template, reward (share of completion characters
in "the"), ``num_generations``, ``max_completion_length``, batch (one optimizer step per
generation round, no KL/reference: TRL's default ``beta=0``), learning rate and number of
steps, full fine-tuning. Both use float32 and 2 threads for the model math. Seconds per
iteration are the mean over iterations after the first (warm-up) one; start-up (Ray Train job,
actor start, TRL's trainer construction) is reported separately. fnsft and TRL alternate
(``--rounds``, default 3: fnsft→TRL, TRL→fnsft, fnsft→TRL); reported: the median and min-max
over rounds of each side's seconds per iteration and of the per-round ratio fnsft/TRL, each run
beside them (with the load average before and after it), and the machine (CPU model, load).
Writes benchmarks/results/grpo_vs_trl_<model>.json.

SmolLM2 (a real 135M model) is the comparison that matters; the tiny model (a few hundred
thousand weights, ~50 ms per iteration) measures fnsft's fixed cost per iteration: the Ray
calls to the role actors, DeepSpeed's step and the weight push.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)
from common import RESULTS, machine, run_alternating, spread  # noqa: E402
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CHARS = "the"


def reward_the(prompts, completions, **kwargs):
    """TRL-style reward: share of non-space completion characters in CHARS (same as fnsft's target_chars)."""
    from fnsft.rl.rewards import target_chars

    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return target_chars(prompts, texts, chars=CHARS)


def load_prompts(n: int) -> list[dict]:
    with open(os.path.join(REPO, "examples", "arithmetic", "train.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return rows[:n]


def run_fnsft(args, out_dir: str) -> dict:
    from fnsft.pipeline.driver import Pipeline

    stage = {
        "dataset_name_or_path": os.path.join(REPO, "examples", "arithmetic", "train.jsonl"),
        "algorithm": "grpo", "num_iterations": args.steps, "prompts_per_iteration": args.prompts,
        "num_generations": args.num_generations, "max_new_tokens": args.max_new_tokens,
        "learning_rate": args.learning_rate, "kl_coef": 0.0, "ppo_epochs": 1, "num_mini_batches": 1,
        "rewards": [{"type": "target_chars", "chars": CHARS}], "report_to": ["none"],
        "save_intermediate": False, "logging_steps": 10**6, "seed": 0,
        "generation": {"num_cpus": 2}, "reward": {"num_cpus": 0.25},
        "resources": {"num_workers": 1, "cpus_per_worker": 2},
    }
    cfg = {"model_name_or_path": args.model, "output_dir": out_dir, "stages": ["rl"], "torch_dtype": "float32",
           "deepspeed": {"zero_stage": 2}, "stage_configs": {"rl": stage}}  # float32: TRL's side runs bf16=False
    t0 = time.time()
    summary = Pipeline.from_dict(cfg).run()
    total = time.time() - t0
    rl = summary["stages"]["rl"]
    with open(rl["artifacts"]["rl_history"]) as f:
        history = json.load(f)
    steady = history[1:] or history
    mean = lambda key: sum(h[key] for h in steady) / len(steady)  # noqa: E731
    split = {k: round(mean(f"time/{k}_s"), 4) for k in ("generation", "scoring", "training", "weight_sync")}
    return {
        "seconds_per_iteration": round(mean("time/iteration_s"), 4),
        "time_split_seconds": split,
        "time_split_share": {k: round(v / mean("time/iteration_s"), 3) for k, v in split.items()},
        "reward_first": history[0]["reward_mean"], "reward_last": history[-1]["reward_mean"],
        "iterations": len(history), "stage_seconds_total": round(total, 2),
        "startup_seconds": round(total - sum(h["time/iteration_s"] for h in history), 2),
        "strategy": rl["metrics"].get("strategy"),
    }


def run_trl(args, out_dir: str) -> dict:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from fnsft.models.spec import resolve_model_path

    torch.set_num_threads(2)
    torch.manual_seed(0)
    path = resolve_model_path(args.model)
    rows = [{"prompt": [{"role": "user", "content": r["prompt"]}]} for r in load_prompts(400)]
    batch = args.prompts * args.num_generations
    config = GRPOConfig(
        output_dir=out_dir, per_device_train_batch_size=batch, num_generations=args.num_generations,
        max_completion_length=args.max_new_tokens, max_steps=args.steps, learning_rate=args.learning_rate,
        lr_scheduler_type="constant", use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False,
        logging_steps=1, report_to="none", save_strategy="no", temperature=1.0, beta=0.0, seed=0,
        steps_per_generation=1, num_iterations=1, disable_tqdm=True, dataloader_num_workers=0)

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times, self.t = [], None

        def on_step_begin(self, a, state, control, **kw):
            self.t = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            self.times.append(time.perf_counter() - self.t)

    timer = StepTimer()
    t0 = time.time()
    trainer = GRPOTrainer(model=path, reward_funcs=[reward_the], args=config,
                          train_dataset=Dataset.from_list(rows), callbacks=[timer])
    setup = time.time() - t0
    gen_times: list[float] = []  # TRL's generate calls, for a split next to fnsft's
    generate = trainer.model.generate

    def timed_generate(*a, **kw):
        t = time.perf_counter()
        out = generate(*a, **kw)
        gen_times.append(time.perf_counter() - t)
        return out

    trainer.model.generate = timed_generate
    trainer.train()
    total = time.time() - t0
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    steady = timer.times[1:] or timer.times
    gen_steady = gen_times[1:] or gen_times
    return {
        "seconds_per_iteration": round(sum(steady) / len(steady), 4),
        "generation_seconds_per_iteration": round(sum(gen_steady) / len(gen_steady), 4) if gen_steady else None,
        "reward_first": rewards[0] if rewards else None, "reward_last": rewards[-1] if rewards else None,
        "iterations": len(timer.times), "total_seconds": round(total, 2), "startup_seconds": round(setup, 2),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="builtin:smollm2-135m-instruct")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--num-generations", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--learning-rate", type=float, default=1e-5)
    p.add_argument("--rounds", type=int, default=3, help="fnsft and TRL alternate (fnsft first in round 0)")
    p.add_argument("--out", default=None, help="default: benchmarks/results/grpo_vs_trl_<model>.json")
    p.add_argument("--work-dir", default="/tmp/fnsft_bench_grpo")
    args = p.parse_args(argv)
    if args.out is None:
        slug = args.model.split(":")[-1].split("/")[-1].split("-instruct")[0]
        args.out = os.path.join(RESULTS, f"grpo_vs_trl_{slug}.json")

    load_before = os.getloadavg()[0]  # other work on the machine skews both timings
    n = {"fnsft": 0, "trl": 0}

    def side(name: str):
        def once() -> dict:
            n[name] += 1
            out = os.path.join(args.work_dir, f"{name}{n[name]}")
            return _fnsft_once(args, out) if name == "fnsft" else run_trl(args, out)
        return once

    runs, order = run_alternating({"fnsft": side("fnsft"), "trl": side("trl")}, args.rounds,
                                  lambda m: f"{m['seconds_per_iteration']:.2f} s/iteration")
    fnsft, trl = _median_of(runs["fnsft"]), _median_of(runs["trl"])
    ratios = [f["seconds_per_iteration"] / t["seconds_per_iteration"] for f, t in zip(runs["fnsft"], runs["trl"])]
    result = {
        "benchmark": "grpo_vs_trl", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "torch": _torch_version(),
        "model": args.model, "steps": args.steps, "prompts_per_step": args.prompts,
        "num_generations": args.num_generations, "max_completion_length": args.max_new_tokens,
        "rounds": args.rounds, "order": order,
        "machine": machine(),
        "load_average_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "fnsft": fnsft, "trl": trl,
        "ratio_fnsft_over_trl_seconds_per_iteration": round(fnsft["seconds_per_iteration"] / trl["seconds_per_iteration"], 3),
        "ratio_fnsft_over_trl_seconds_per_iteration_per_round": spread(ratios),
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))
    return 0


def _fnsft_once(args, out_dir: str) -> dict:
    """One fnsft run in a Ray started as a user's local run starts it, shut down after (TRL's
    side then has the CPUs to itself)."""
    import ray

    from fnsft.config.schema import RayConfig
    from fnsft.runtime.ray_start import ensure_ray

    ensure_ray(RayConfig(num_cpus=6))  # the learner + role actors' CPUs
    try:
        return run_fnsft(args, out_dir)
    finally:
        ray.shutdown()


def _median_of(runs: list[dict]) -> dict:
    """The median seconds per iteration (and its parts) over the rounds, with every run beside it."""
    import statistics

    med = lambda get: round(statistics.median(get(m) for m in runs), 4)  # noqa: E731
    out = {"seconds_per_iteration": med(lambda m: m["seconds_per_iteration"]),
           "seconds_per_iteration_spread": spread(m["seconds_per_iteration"] for m in runs), "runs": runs}
    if "time_split_seconds" in runs[0]:
        out["time_split_seconds"] = {k: med(lambda m: m["time_split_seconds"][k]) for k in runs[0]["time_split_seconds"]}
    if runs[0].get("generation_seconds_per_iteration") is not None:
        out["generation_seconds_per_iteration"] = med(lambda m: m["generation_seconds_per_iteration"])
    return out


def _torch_version() -> str:
    import torch

    return torch.__version__


if __name__ == "__main__":
    sys.exit(main())
