"""The chaos run: sft -> dpo -> rl (tiny model) on a simulated cluster while worker nodes die.

    python benchmarks/chaos_run.py                      # 2 undisturbed runs, then the chaos run
    python benchmarks/chaos_run.py --undisturbed-from benchmarks/results/chaos_run.json   # reuse them

A head with no CPUs and three 2-CPU worker nodes (``ray.cluster_utils.Cluster``, separate raylets,
the same simulated cluster as tests/cluster). In the chaos run, once each stage has a registered
checkpoint, a node holding one of its Train workers, picked at random, is removed (its processes
SIGKILLed, as when a machine dies) — one kill per stage, at most ``--kills`` — and a fresh node
joins each time, as an autoscaler would bring one (``--target any``: a random worker node,
which may hold no Train worker). The undisturbed runs (seeds ``seed``, ``seed+1``, ...) give the
spread the chaos run's (seed ``seed``) final metrics are compared with; they are deterministic
for a seed, so ``--undisturbed-from`` may take them from an earlier results file of the same
settings (recorded in the JSON). Writes benchmarks/results/chaos_run.json: per kill what the
node held and the newest checkpoint, per stage where it resumed from.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import REPO, write_result  # noqa: E402

STAGES = ("sft", "dpo", "rl")
# Final metrics compared between runs: lower/higher is better is not claimed, only "within the spread".
# SFT/DPO: the loss logged at the last step (HF's ``train_loss`` averages only the steps a resumed
# process ran itself, so it is not comparable between a resumed run and an undisturbed one).
COMPARED = {"sft": "last_step_loss", "dpo": "last_step_loss", "rl": "reward_end"}


def _last_step_loss(stage: dict) -> tuple:
    """(step, loss) of the last ``log_history.json`` entry with a training loss."""
    path = stage.get("artifacts", {}).get("log_history")
    if not path or not os.path.exists(path):
        return None, None
    with open(path) as f:
        logged = [e for e in json.load(f) if "loss" in e]
    return (logged[-1].get("step"), logged[-1]["loss"]) if logged else (None, None)


def _sim():
    spec = importlib.util.spec_from_file_location("sim", os.path.join(REPO, "tests", "cluster", "sim.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def pipeline_config(out: str, address: str) -> dict:
    examples = os.path.join(REPO, "examples")
    return {
        "model_name_or_path": "builtin:tiny-llama", "output_dir": out, "stages": list(STAGES),
        "resources": {"num_workers": 2, "cpus_per_worker": 1, "placement_strategy": "SPREAD", "max_failures": 8},
        "deepspeed": {"zero_stage": 2, "on_single_worker": True},
        "ray": {"address": address},
        "stage_configs": {
            "sft": {"dataset_name_or_path": os.path.join(examples, "sample_data.jsonl"), "max_steps": 40,
                    "save_steps": 8, "logging_steps": 4, "learning_rate": 3e-3, "per_device_train_batch_size": 4, "max_length": 128,
                    "eval_split": 0.0, "report_to": ["none"]},
            "dpo": {"preference_dataset_path": os.path.join(examples, "preferences.jsonl"), "max_steps": 24,
                    "save_steps": 6, "logging_steps": 4, "learning_rate": 1e-3, "per_device_train_batch_size": 2, "max_length": 128,
                    "max_prompt_length": 64, "eval_split": 0.0, "report_to": ["none"]},
            "rl": {"dataset_name_or_path": os.path.join(examples, "arithmetic", "train.jsonl"), "algorithm": "grpo",
                   "num_iterations": 24, "save_steps": 4, "prompts_per_iteration": 4, "num_generations": 4,
                   "max_new_tokens": 8, "learning_rate": 3e-3, "kl_coef": 0.0, "eval_split": 0.0,
                   "rewards": [{"type": "target_chars", "chars": "the"}], "report_to": ["none"],
                   "resources": {"num_workers": 1, "cpus_per_worker": 1, "max_failures": 8},
                   "generation": {"num_replicas": 1, "num_cpus": 1}, "reward": {"num_cpus": 0}},
        },
    }


def _seeded(cfg: dict, seed: int) -> dict:
    for stage in cfg["stage_configs"].values():
        stage["seed"] = seed
    return cfg


def _running_stage(out: str) -> tuple[str | None, str | None]:
    """The stage whose folder appeared last, and that folder."""
    dirs = sorted(d for d in os.listdir(out) if d[:2].isdigit() and os.path.isdir(os.path.join(out, d))) \
        if os.path.isdir(out) else []
    if not dirs:
        return None, None
    return dirs[-1].split("_", 1)[1], os.path.join(out, dirs[-1])


def _worker_nodes(stage_dir: str) -> dict[str, int]:
    """node id -> Train worker rank, from the ``.worker<rank>.node`` marks a stage's workers write."""
    held = {}
    for name in os.listdir(stage_dir):
        if name.startswith(".worker") and name.endswith(".node"):
            try:
                held[open(os.path.join(stage_dir, name)).read().strip()] = int(name[7:-5])
            except (OSError, ValueError):
                pass
    return held


def run_once(work: str, kills: int, poll_s: float, seed: int, target: str = "workers") -> dict:
    """One pipeline on a fresh simulated cluster; ``kills`` > 0: the chaos run."""
    from fnsft.testing import registered_checkpoints

    sim = _sim()
    cluster = sim.SimCluster()
    events: list[dict] = []
    try:
        for _ in range(3):
            cluster.add_worker(num_cpus=2)
        out = os.path.join(work, "out")
        path = os.path.join(work, "run.yaml")
        import yaml

        with open(path, "w") as f:
            yaml.safe_dump(_seeded(pipeline_config(out, cluster.address), seed), f)
        log = open(os.path.join(work, "driver.log"), "w")
        env = {**os.environ, "PYTHONPATH": REPO, "RAY_ADDRESS": ""}
        t0 = time.time()
        proc = subprocess.Popen([sys.executable, "-m", "fnsft.cli", "--config", path], stdout=log,
                                stderr=subprocess.STDOUT, cwd=REPO, env=env)
        rng = random.Random(seed)

        killed_in: set[str] = set()

        def kill_one():
            """Once the running stage has a registered checkpoint, SIGKILL a node holding one of its
            Train workers, picked at random (``--target any``: any worker node) — one kill per
            stage, so every stage has to resume. In the main thread: Ray's Cluster.remove_node
            installs signal handlers."""
            stage, stage_dir = _running_stage(out)
            if stage is None or stage in killed_in:
                return
            ckpts = registered_checkpoints(os.path.join(out, "ray_train"), stage)
            held = _worker_nodes(stage_dir)
            nodes = sorted(cluster.cluster.worker_nodes, key=lambda n: n.node_id)
            candidates = nodes if target == "any" else [n for n in nodes if n.node_id in held]
            if not ckpts or not candidates:
                return
            victim = rng.choice(candidates)
            cluster.remove(victim.node_id)
            killed_in.add(stage)
            cluster.add_worker(num_cpus=2)
            events.append({"at_s": round(time.time() - t0, 1), "stage": stage,
                           "held": (f"Train worker rank {held[victim.node_id]}" if victim.node_id in held
                                    else "no Train worker (role actors or nothing)"),
                           "newest_checkpoint": ckpts[-1]})
            print(f"[chaos] {events[-1]}", flush=True)

        deadline = t0 + 3600
        while True:
            try:
                rc = proc.wait(timeout=poll_s)
                break
            except subprocess.TimeoutExpired:
                if time.time() > deadline:
                    proc.kill()
                    raise
                if len(events) < kills:
                    try:
                        kill_one()
                    except Exception as e:  # recorded: a chaos run whose kill failed is not a chaos run
                        events.append({"error": f"{type(e).__name__}: {e}"})
                        print(f"[chaos] kill failed: {events[-1]}", flush=True)
        seconds = time.time() - t0
        log.close()
        result = {"returncode": rc, "seconds": round(seconds, 1), "kills": events}
        summary_path = os.path.join(out, "pipeline_summary.json")
        if os.path.exists(summary_path):
            with open(summary_path) as f:
                stages = json.load(f)["stages"]
            result["stages"] = {
                s: {"status": stages[s]["status"], "resumed_from": stages[s].get("metrics", {}).get(
                    "resumed_from_iteration" if s == "rl" else "resumed_from_step")}
                for s in STAGES if s in stages}
            for s, got in result["stages"].items():
                metrics = stages[s].get("metrics", {})
                if s == "rl":
                    got["reward_end"] = metrics.get("reward_end")
                else:
                    got["train_loss"] = metrics.get("train_loss")
                    got["last_step"], got["last_step_loss"] = _last_step_loss(stages[s])
        if rc != 0:
            with open(os.path.join(work, "driver.log")) as f:
                result["log_tail"] = f.read()[-3000:]
        return result
    finally:
        cluster.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=3, help="nodes killed in the chaos run (at most one per stage)")
    ap.add_argument("--poll", type=float, default=5.0, help="seconds between looks at the running stage")
    ap.add_argument("--target", choices=["workers", "any"], default="workers",
                    help="kill a node holding the stage's Train workers, or any worker node")
    ap.add_argument("--undisturbed", type=int, default=2, help="undisturbed runs for the spread")
    ap.add_argument("--undisturbed-from", help="take the undisturbed runs from this earlier results file")
    ap.add_argument("--seed", type=int, default=1, help="undisturbed runs use seeds seed..seed+n-1; chaos: seed")
    args = ap.parse_args()
    runs = {"undisturbed": [], "chaos": None}
    if args.undisturbed_from:
        with open(args.undisturbed_from) as f:
            old = json.load(f)
        if old["settings"].get("seed") != args.seed:
            sys.exit(f"--undisturbed-from: {args.undisturbed_from} used seed {old['settings'].get('seed')}, not {args.seed}")
        runs["undisturbed"] = old["runs"]["undisturbed"]
        runs["undisturbed_from"] = {"file": os.path.basename(args.undisturbed_from), "date": old.get("date")}
    for i in range(0 if args.undisturbed_from else args.undisturbed):
        with tempfile.TemporaryDirectory(prefix="fnsft-chaos-") as work:
            runs["undisturbed"].append(run_once(work, 0, args.poll, args.seed + i))
            print(f"[chaos] undisturbed run {i}: {runs['undisturbed'][-1].get('stages')}", flush=True)
    with tempfile.TemporaryDirectory(prefix="fnsft-chaos-") as work:
        runs["chaos"] = run_once(work, args.kills, args.poll, args.seed, args.target)
    verdict = {}
    for s in STAGES:
        base = [r["stages"][s][COMPARED[s]] for r in runs["undisturbed"] if r.get("stages", {}).get(s)]
        got = (runs["chaos"].get("stages") or {}).get(s, {}).get(COMPARED[s])
        if base and got is not None:
            lo, hi = min(base), max(base)
            verdict[s] = {"metric": COMPARED[s], "chaos": got, "undisturbed_min": lo, "undisturbed_max": hi,
                          "within_spread": lo <= got <= hi,
                          # the first undisturbed run has the chaos run's seed: a resume that loses nothing
                          # and redoes the lost steps deterministically ends where it did
                          "same_seed_undisturbed": base[0], "equal_to_same_seed": abs(got - base[0]) < 1e-4}
    kills_done = [e for e in runs["chaos"]["kills"] if "error" not in e]
    completed = runs["chaos"]["returncode"] == 0 and len(kills_done) > 0 and len(kills_done) == len(runs["chaos"]["kills"])
    resumed = {s: (runs["chaos"].get("stages") or {}).get(s, {}).get("resumed_from") for s in STAGES}
    write_result("chaos_run", {"settings": vars(args), "runs": runs, "verdict": verdict, "kills_done": len(kills_done),
                               "stages_resumed_from": resumed, "completed": completed})
    if not completed:  # a run with no kill (or a failed killer) proves nothing: never reported as a pass
        sys.exit(f"chaos run not valid: {len(kills_done)} node kills, returncode {runs['chaos']['returncode']}")


if __name__ == "__main__":
    main()
