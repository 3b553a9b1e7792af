"""Does a stage's start-up grow with its dataset? Driver peak RSS and time to the first step, 1M vs 20k rows.

    python benchmarks/data_scale.py [--rows 20000 1000000] [--formats jsonl parquet] [--steps 3] [--quick] [--resume]
                                    [--streaming]

Writes synthetic Alpaca sets of each size (deterministic; ~250 bytes a row, as .jsonl and as
.parquet) into a temporary folder, then runs the SFT stage on each in a fresh Python process (the
driver, as a user starts it): SmolLM2-135M-Instruct, LoRA, ``max_steps`` ``--steps``, one worker
with the machine's CPUs, the default held-out share (``eval_split`` 0.1, capped by
``eval_max_rows``). Per run: the driver process's peak RSS (``driver_peak_rss_mb``), the time
from the process's start to the end of the first optimizer step (``to_first_step_s``, as in
benchmarks/startup.py) and the stage's data phases. Then, per format, the ratios largest /
smallest set against the goals of issue #25 (RSS <= 1.2x, first step <= 1.5x). ``--quick``: the
tiny model, 2,000 vs 20,000 rows, jsonl only (the test that keeps this script from rotting).
Prints and writes benchmarks/results/data_scale.json (``data_scale_quick.json``) with the CPU
model and the load average before and after: compare ratios from one run, not absolute times.
``--streaming``: the same runs with ``data_streaming: true`` (Ray Data reads, tokenizes and
shards the rows; docs/data.md), written to ``data_scale[_quick]_streaming.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import SMOLLM2, TINY, write_result  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOALS = {"driver_peak_rss_mb": 1.2, "to_first_step_s": 1.5}  # issue #25: largest / smallest set
WORDS = ("river mountain quiet garden engine window silver market letter planet music paper light "
         "story winter orange careful simple bright travel number village answer follow").split()


def write_sets(folder: str, rows: int, formats: list[str]) -> dict[str, str]:
    """``rows`` synthetic Alpaca rows as each format; returns format -> path (written in chunks)."""
    rng = random.Random(rows)
    paths = {f: os.path.join(folder, f"alpaca_{rows}.{f}") for f in formats}
    chunk = 50_000
    writer = None
    with open(paths.get("jsonl", os.devnull), "w") as jf:
        for start in range(0, rows, chunk):
            batch = []
            for i in range(start, min(rows, start + chunk)):
                words = rng.choices(WORDS, k=rng.randint(20, 45))
                batch.append({"instruction": f"Write about {' and '.join(words[:3])} (item {i}).",
                              "input": "", "output": " ".join(words[3:]).capitalize() + "."})
            if "jsonl" in paths:
                jf.write("".join(json.dumps(r) + "\n" for r in batch))
            if "parquet" in paths:
                import pyarrow as pa
                import pyarrow.parquet as pq

                table = pa.Table.from_pylist(batch)
                writer = writer or pq.ParquetWriter(paths["parquet"], table.schema)
                writer.write_table(table)
    if writer is not None:
        writer.close()
    return paths


def child(data: str, model: str, steps: int, out: str, streaming: bool = False) -> dict:
    """One pipeline run in this fresh process (the driver); returns its figures."""
    t0 = time.time()
    from fnsft.pipeline import Pipeline

    cfg = {"model_name_or_path": model, "output_dir": out, "save_final_model": False, "stages": ["sft"],
           "stage_configs": {"sft": {"dataset_name_or_path": data, "max_steps": steps, "use_peft": True,
                                     "max_length": 192, "per_device_train_batch_size": 4, "learning_rate": 3e-4,
                                     "save_steps": 0, "save_intermediate": False, "report_to": ["none"],
                                     "data_streaming": streaming}}}
    summary = Pipeline.from_dict(cfg).run()
    stage = summary["stages"]["sft"]
    m, t = stage["metrics"], stage["timings"]
    first = m["train_begin_unix"] - t0 + (t.get("eval_before_s") or 0) + (t.get("first_step_s") or 0)
    return {"to_first_step_s": round(first, 2), "driver_peak_rss_mb": m["driver_peak_rss_mb"],
            "worker_peak_rss_mb": m.get("worker_peak_rss_mb_max"), "train_rows": m.get("train_rows"),
            "eval_rows": m.get("eval_rows"), "wall_s": round(time.time() - t0, 2),
            **{k: t[k] for k in ("driver_prepare_s", "dataset_s", "eval_before_s", "first_step_s") if k in t}}


def run_case(data: str, model: str, steps: int, tries: int = 2, streaming: bool = False) -> dict:
    """One run in a fresh process; tried again once when it fails (a busy machine's Ray start can time out)."""
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for attempt in range(1, tries + 1):
        out = tempfile.mkdtemp(prefix="data_scale_")
        proc = subprocess.run([sys.executable, __file__, "--child", data, "--model", model, "--steps", str(steps),
                               "--out", out] + (["--streaming"] if streaming else []),
                              env=env, capture_output=True, text=True, cwd=ROOT)
        for line in proc.stdout.splitlines():
            if line.startswith("DATA_SCALE_JSON "):
                return {**json.loads(line[len("DATA_SCALE_JSON "):]), "attempt": attempt}
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
    raise SystemExit(f"{data} failed (exit {proc.returncode})")


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "?")
    except OSError:
        return "?"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", nargs="+", type=int, default=[20_000, 1_000_000])
    p.add_argument("--formats", nargs="+", default=["jsonl", "parquet"], choices=["jsonl", "parquet"])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="tiny model, 2,000 vs 20,000 rows, jsonl")
    p.add_argument("--resume", action="store_true",
                   help="keep the runs the results file already holds (same model and steps); run only the others")
    p.add_argument("--streaming", action="store_true",
                   help="the SFT stage with data_streaming: true (Ray Data reads and tokenizes on the cluster)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--model", default=SMOLLM2, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print("DATA_SCALE_JSON " + json.dumps(child(a.child, a.model, a.steps, a.out, a.streaming)), flush=True)
        return
    model = TINY if a.quick else a.model
    rows, formats = ([2_000, 20_000], ["jsonl"]) if a.quick else (sorted(a.rows), a.formats)
    load_before = os.getloadavg()
    results: dict = {}
    name = ("data_scale_quick" if a.quick else "data_scale") + ("_streaming" if a.streaming else "")
    if a.resume:  # a long run on a busy machine goes on where it stopped
        from common import RESULTS

        try:
            with open(os.path.join(RESULTS, f"{name}.json")) as f:
                old = json.load(f)
            if (old["settings"]["model"], old["settings"]["max_steps"]) == (model, a.steps):
                results = {fmt: {n: r for n, r in runs.items() if int(n) in rows}
                           for fmt, runs in old["results"].items() if fmt in formats}
        except (OSError, ValueError, KeyError):
            pass

    def write(final: bool) -> None:  # after every run: a long benchmark's finished runs are kept
        ratios = {}
        for fmt, runs in results.items():
            small, large = runs.get(str(rows[0])), runs.get(str(rows[-1]))
            if small and large and len(rows) > 1:
                ratios[fmt] = {k: {"ratio": round(large[k] / small[k], 2), "goal": g, "met": large[k] / small[k] <= g}
                               for k, g in GOALS.items()}
        write_result(name, {
            "command": "python benchmarks/data_scale.py " + " ".join(sys.argv[1:]),
            "finished": final,
            "settings": {"model": model, "rows": rows, "formats": formats, "max_steps": a.steps, "quick": a.quick,
                         "data_streaming": a.streaming,
                         "stage": "sft, LoRA r16, max_length 192, batch 4, 1 worker (all CPUs), eval_split 0.1 "
                                  "capped by eval_max_rows (256)"},
            "cpu_model": cpu_model(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "results": results,
            f"ratio_{rows[-1]}_over_{rows[0]}": ratios,
        })

    with tempfile.TemporaryDirectory(prefix="data_scale_sets_") as folder:
        for fmt in formats:
            for n in rows:
                if str(n) in results.get(fmt, {}):
                    continue
                path = write_sets(folder, n, [fmt])[fmt]
                r = run_case(path, model, a.steps, streaming=a.streaming)
                r["file_mb"] = round(os.path.getsize(path) / 2**20, 1)
                r["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
                os.remove(path)
                results.setdefault(fmt, {})[str(n)] = r
                print(f"{fmt} {n:>9} rows: {json.dumps(r)}", flush=True)
                write(final=False)
    write(final=True)

if __name__ == "__main__":
    main()
