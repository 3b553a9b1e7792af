"""How long a user waits for training to start: the command's start to the end of the first
optimizer step, and where that time goes (Ray start, worker group, imports, model, data, trainer).

    python benchmarks/startup.py [--cases smollm2 tiny] [--layouts quickstart defaults] [--steps 3] [--rounds 3]

The headline, per case and layout, is ``to_first_step_s``: from the moment this script spawns the
run's Python process (interpreter start and imports included) to the end of the first optimizer
step; its median and min-max over ``--rounds`` (default 3) are reported. Each round runs every
case and layout once, the order alternating from round to round (reversed in odd rounds), so a
drifting load hits them all.

Each case runs the quickstart's SFT stage (configs/quickstart.yaml: LoRA, ``max_length`` 192, 5 %
held out) for ``--steps`` steps in a fresh Python process, so Ray starts from nothing as it does
for a user, in two layouts: ``quickstart`` (its 2 workers with ZeRO-2) and ``defaults`` (its
``resources`` and ``deepspeed`` keys left out: one worker with all the machine's CPUs, no
DeepSpeed). The phases come from the run's ``pipeline_summary.json``
(driver and rank-0 marks, see ``fnsft.workers.startup_marks``); ``stage_startup_s`` is the
stage's start (placement check, data read) to the end of its first training step, evaluation
before training excluded (it is work, not start-up, and ``eval_before_training: false`` skips it);
``ready_to_train_s`` the same to the start of that step (DeepSpeed and the trainer ready);
``to_first_step_s`` is the command's start to the end of that step (the driver prepares the
base model and the report's base answers while Ray starts, so its phases overlap: measured, not
summed); ``python_start_s`` is the interpreter's start before the script's first line.
The phases are secondary figures (medians). Prints and writes benchmarks/results/startup.json,
with the machine (CPU model) and its load average before and after each run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import run_alternating, spread, write_result  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = {"smollm2": "builtin:smollm2-135m-instruct", "tiny": "builtin:tiny-llama"}
# Driver side, then rank 0 of the Train job (in order).
DRIVER = ["python_imports_s", "validate_s", "ray_start_s", "model_ready_s", "base_report_s"]
STAGE = ["driver_prepare_s", "worker_group_start_s", "worker_imports_s", "model_load_s", "dataset_s",
         "trainer_init_s", "engine_init_s", "eval_before_s", "first_step_s"]


LAYOUTS = ("quickstart", "defaults")


def child(case: str, layout: str, steps: int, out: str, spawned: float) -> dict:
    """One pipeline run in this (fresh) process, spawned by the parent at ``spawned`` (unix time);
    returns its timings."""
    t0 = time.time()
    import yaml

    from fnsft.pipeline import Pipeline

    t_imports = time.time()
    with open(os.path.join(ROOT, "configs", "quickstart.yaml")) as f:
        cfg = yaml.safe_load(f)
    cfg["model_name_or_path"] = MODELS[case]
    cfg["output_dir"] = out
    cfg["save_final_model"] = False
    if layout == "defaults":
        cfg.pop("resources", None)
        cfg.pop("deepspeed", None)
    sft = cfg["stage_configs"]["sft"]
    sft["dataset_name_or_path"] = os.path.join(ROOT, sft["dataset_name_or_path"])
    sft.update(max_steps=steps, save_steps=0, save_intermediate=False)
    pipe = Pipeline.from_dict(cfg)
    t_valid = time.time()
    summary = pipe.run()
    wall = time.time() - t0
    stage = summary["stages"]["sft"]
    timings = {"python_imports_s": t_imports - t0, "validate_s": t_valid - t_imports,
               **summary.get("timings", {}), **stage["timings"]}
    timings["stage_s"] = stage["seconds"]
    timings["stage_startup_s"] = sum(timings.get(k) or 0 for k in STAGE if k != "eval_before_s")
    # The same without the first step, which is training (SmolLM2's takes seconds, the tiny model's ms).
    timings["ready_to_train_s"] = timings["stage_startup_s"] - (timings.get("first_step_s") or 0)
    # The command's start (the parent's spawn) to the end of the first step (the driver's phases
    # overlap: measured, not summed).
    timings["python_start_s"] = t0 - spawned
    timings["to_first_step_s"] = stage["metrics"]["train_begin_unix"] - spawned + (timings.get("eval_before_s") or 0) + \
        (timings.get("first_step_s") or 0)
    timings["wall_s"] = wall
    timings["driver_cpu_s"] = time.process_time()
    timings["seconds_per_step"] = stage["metrics"].get("seconds_per_step_steady")
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in timings.items()}


def run_case(case: str, layout: str, steps: int) -> dict:
    out = tempfile.mkdtemp(prefix=f"startup_{case}_")
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, __file__, "--child", case, "--layout", layout, "--steps", str(steps),
                           "--out", out, "--spawned", repr(time.time())],
                          env=env, capture_output=True, text=True, cwd=ROOT)
    for line in proc.stdout.splitlines():
        if line.startswith("STARTUP_JSON "):
            return json.loads(line[len("STARTUP_JSON "):])
    sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
    raise SystemExit(f"case {case} ({layout}) failed (exit {proc.returncode})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="+", default=["tiny", "smollm2"], choices=sorted(MODELS))
    p.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=LAYOUTS)
    p.add_argument("--layout", default="quickstart", choices=LAYOUTS, help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3, help="runs of each case and layout, the order alternating")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--spawned", type=float, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--name", default="startup", help="results file name (benchmarks/results/<name>.json)")
    a = p.parse_args()
    if a.child:
        print("STARTUP_JSON " + json.dumps(child(a.child, a.layout, a.steps, a.out, a.spawned)), flush=True)
        return
    load_before = os.getloadavg()
    combos = {(case if layout == "quickstart" else f"{case}_{layout}"): (case, layout)
              for layout in a.layouts for case in a.cases}
    sides = {name: (lambda c=c, lay=lay: run_case(c, lay, a.steps)) for name, (c, lay) in combos.items()}
    all_runs, order = run_alternating(sides, a.rounds, lambda m: f"{m['to_first_step_s']:.2f} s to the first step")
    results = {}
    for name, (case, layout) in combos.items():
        runs = all_runs[name]
        keys = [k for k in runs[0] if all(isinstance(r.get(k), (int, float)) for r in runs)]
        results[name] = {"to_first_step_s": spread(r["to_first_step_s"] for r in runs),
                         "median": {k: round(statistics.median(r[k] for r in runs), 3) for k in keys},
                         "runs": runs}
        med, head = results[name]["median"], results[name]["to_first_step_s"]
        print(f"\n{case} ({MODELS[case]}), {layout} layout: command start -> first step "
              f"{head['median']:.2f} s (min {head['min']:.2f}, max {head['max']:.2f}, {head['n']} runs); phases, median:")
        print(f"  {'phase':<22} {'wall s':>8} {'rank-0 CPU s':>13}")
        for k in ["python_start_s"] + DRIVER + STAGE + ["ready_to_train_s", "stage_startup_s", "to_first_step_s",
                                                          "stage_s", "wall_s", "driver_cpu_s"]:
            if k in med:
                cpu = med.get(k[:-2] + "_cpu_s")
                print(f"  {k:<22} {med[k]:8.2f} {'' if cpu is None else f'{cpu:13.2f}'}")
    write_result(a.name, {
        "command": "python benchmarks/startup.py " + " ".join(sys.argv[1:]),
        "config": "configs/quickstart.yaml, sft: max_steps=%d, save_steps=0" % a.steps,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "rounds": a.rounds, "order": order,
        "headline": "to_first_step_s: the command's start to the end of the first optimizer step (median, min, max)",
        "phases": {"driver": DRIVER, "stage": STAGE},
        "results": results,
    })


if __name__ == "__main__":
    main()
