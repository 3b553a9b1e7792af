"""The README's main job end to end, as a user runs it: ``fnsft-pipeline --config
configs/quickstart.yaml`` (SFT, LoRA, SmolLM2-135M-Instruct, 2 workers ZeRO-2, 40 steps), timed
from the command's start to its exit, ``--rounds`` times (default 3), each in a fresh process and
a fresh output folder.

    python benchmarks/quickstart.py [--rounds 3]

Reported (median and min-max over the rounds): wall seconds, the stage's useful (non-padding)
training tokens/s, and the held-out loss before and after training; every run's load average
before and after, and the CPU model. Writes benchmarks/results/quickstart.json. fnsft only: the
side-by-side comparisons with TRL are sft_throughput.py and dpo_throughput.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import REPO, spread, write_result  # noqa: E402

CONFIG = os.path.join(REPO, "configs", "quickstart.yaml")


def one_run() -> dict:
    out = tempfile.mkdtemp(prefix="fnsft_quickstart_")
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(["fnsft-pipeline", "--config", CONFIG, "--output_dir", out], cwd=REPO,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"quickstart failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    with open(os.path.join(out, "pipeline_summary.json")) as f:
        sft = json.load(f)["stages"]["sft"]["metrics"]
    shutil.rmtree(out, ignore_errors=True)
    run = {"wall_s": round(wall, 1), "useful_tokens_per_s": sft.get("useful_tokens_per_second"),
           "eval_loss_before": sft.get("before_eval_loss"), "eval_loss_after": sft.get("eval_loss"),
           "load_average_1min": [round(load, 1), round(os.getloadavg()[0], 1)]}
    print(f"  {run}", flush=True)
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    runs = [one_run() for _ in range(args.rounds)]
    write_result("quickstart", {
        "command": "fnsft-pipeline --config configs/quickstart.yaml --output_dir <fresh temp dir>",
        "rounds": args.rounds, "runs": runs,
        **{key: spread(r[key] for r in runs)
           for key in ("wall_s", "useful_tokens_per_s", "eval_loss_before", "eval_loss_after")}})


if __name__ == "__main__":
    main()
