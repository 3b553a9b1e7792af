"""What a sweep leaves behind: the results table (CSV + console) and ``best_config.yaml``."""

from __future__ import annotations

import csv
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Optional

import yaml

from fnsft.tune.space import Sweep, base_config, with_values

COMPLETED = "pipeline/completed"  # only in a trial's final report: it ran all its stages
SECONDS = "pipeline/seconds"


@dataclass
class TrialRow:
    trial_id: str
    status: str  # completed | stopped early | error
    values: dict[str, Any]  # swept path -> value
    metrics: dict[str, float] = field(default_factory=dict)  # <stage>/<metric> -> value
    output_dir: str = ""
    error: str = ""

    def score(self, metric: str) -> Optional[float]:
        v = self.metrics.get(metric)
        return v if isinstance(v, (int, float)) and not math.isnan(v) else None


def rows_from_results(grid, sweep: Sweep) -> list[TrialRow]:
    """One row per trial of a ``ResultGrid``, best first (see :func:`rank`)."""
    rows = []
    for result in grid:
        path = str(result.path or "")
        trial_id = os.path.basename(path.rstrip("/"))
        trial_id = trial_id[len("trial_"):] if trial_id.startswith("trial_") else trial_id
        metrics = {k: float(v) for k, v in (result.metrics or {}).items()
                   if "/" in k and isinstance(v, (int, float)) and not isinstance(v, bool)}
        if result.error is not None:
            status, error = "error", _one_line(result.error)
        elif metrics.get(COMPLETED):
            status, error = "completed", ""
        else:
            status, error = "stopped early", ""
        config = result.config or {}
        rows.append(TrialRow(trial_id=trial_id, status=status,
                             values={p.path: config.get(p.path) for p in sweep.params},
                             metrics=metrics, output_dir=path, error=error))
    return rank(rows, sweep.config.metric, sweep.config.mode)


def rank(rows: list[TrialRow], metric: str, mode: str) -> list[TrialRow]:
    """Completed trials by the metric (best first), then stopped ones, then failed ones."""
    order = {"completed": 0, "stopped early": 1, "error": 2}
    sign = 1 if mode == "min" else -1

    def key(r: TrialRow):
        s = r.score(metric)
        return (order[r.status], s is None, sign * s if s is not None else 0.0, r.trial_id)

    return sorted(rows, key=key)


def best_row(rows: list[TrialRow], metric: str) -> Optional[TrialRow]:
    for r in rows:  # already ranked
        if r.status == "completed" and r.score(metric) is not None:
            return r
    return None


def _one_line(error: BaseException) -> str:
    """The last meaningful line of a trial's (possibly wrapped, multi-line) error."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    for line in reversed(lines):
        m = re.match(r"^(?:[\w]+\.)*(\w*(?:Error|Exception)\b.*)", line)
        if m:  # fnsft.errors.StageError: ... -> StageError: ...
            return m.group(1)[:300]
    return (lines[-1] if lines else type(error).__name__)[:300]


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def write_csv(rows: list[TrialRow], sweep: Sweep, path: str) -> str:
    metric = sweep.config.metric
    keys = sorted({k for r in rows for k in r.metrics} - {metric, COMPLETED, SECONDS})
    header = (["rank", "trial_id", "status"] + [p.path for p in sweep.params]
              + [metric, SECONDS] + keys + ["output_dir", "error"])
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for i, r in enumerate(rows, start=1):
            w.writerow([i, r.trial_id, r.status] + [r.values.get(p.path) for p in sweep.params]
                       + [r.metrics.get(metric), r.metrics.get(SECONDS)]
                       + [r.metrics.get(k) for k in keys] + [r.output_dir, r.error])
    return path


def format_table(rows: list[TrialRow], sweep: Sweep) -> str:
    """A plain-text table for the console: rank, trial, status, swept values, metric, seconds."""
    c = sweep.config
    names = [p.parts[-1] for p in sweep.params]
    if len(set(names)) != len(names):
        names = [p.path for p in sweep.params]
    header = ["rank", "trial", "status"] + names + [c.metric, "seconds"]
    body = []
    for i, r in enumerate(rows, start=1):
        body.append([str(i), r.trial_id, r.status] + [_fmt(r.values.get(p.path)) for p in sweep.params]
                    + [_fmt(r.metrics.get(c.metric)), _fmt(r.metrics.get(SECONDS))])
    widths = [max(len(row[j]) for row in [header] + body) for j in range(len(header))]
    line = lambda cells: "  ".join(x.ljust(w) for x, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = [f"Sweep results: {c.metric} ({c.mode}), {len(rows)} trial(s)", line(header),
           line(["-" * w for w in widths])]
    out += [line(b) for b in body]
    errors = [r for r in rows if r.error]
    for r in errors:
        out.append(f"  trial {r.trial_id} failed: {r.error} (log: {os.path.join(r.output_dir, 'error.txt')})")
    return "\n".join(out)


def write_best_config(plan, sweep: Sweep, best: TrialRow, path: str) -> str:
    """The run's config with the best values set, ``tune:`` removed and a new ``output_dir``."""
    raw = with_values(base_config(plan), best.values)
    raw["output_dir"] = os.path.join(plan.config.output_dir, "tune", "best")
    c = sweep.config
    source = plan.config_path or "(in-memory config)"
    header = (
        f"# Best trial {best.trial_id} of the sweep of {source}:\n"
        f"#   {c.metric} = {best.metrics[c.metric]:.6g} ({c.mode} of {sweep.num_trials} trial(s))\n"
        + "".join(f"#   {p.path} = {best.values.get(p.path)!r}\n" for p in sweep.params)
        + f"# Run it (from the folder the sweep ran in, for relative data paths):\n"
        f"#   fnsft-pipeline --config {path}\n"
    )
    with open(path, "w") as f:
        f.write(header)
        yaml.safe_dump(raw, f, sort_keys=False)
    return path
