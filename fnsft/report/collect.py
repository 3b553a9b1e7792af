"""Everything the report shows, read from a run's output folder (no Ray, no torch).

A run folder holds ``pipeline_summary.json`` (per stage: status, metrics, timings, model path),
``resolved_config.yaml``, ``report_answers.json`` and one folder per stage with its history
files. Reading only those files lets ``fnsft-report`` rebuild the page from a finished or
interrupted run, and keeps the report free of the pipeline's code.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Optional

import yaml

from fnsft.report.curves import Series, keep_metric, stage_series
from fnsft.report.transcripts import read_transcripts

SUMMARY = "pipeline_summary.json"
ANSWERS = "report_answers.json"
CONFIG = "resolved_config.yaml"


@dataclass
class StageView:
    """One stage as the report shows it."""

    index: int
    name: str
    status: str
    seconds: Optional[float]
    folder: str
    model_path: Optional[str]
    metrics: dict[str, Any]
    settings: dict[str, Any]
    resources: dict[str, Any]
    strategy: str
    changes: list[tuple[str, float, float]]  # (metric, before, after)
    series: Series
    error: str = ""
    adapter_path: Optional[str] = None  # LoRA stages: <NN>_<stage>/adapter (fnsft.models.adapters)
    transcripts: dict[str, list] = field(default_factory=dict)  # multi-turn RL: sampled episodes


@dataclass
class RunView:
    output_dir: str
    status: str
    model: str
    total_seconds: Optional[float]
    final_model: Optional[str]
    stages: list[StageView]
    answers: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)


def read_json(path: str, default: Any = None) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default


def read_config(output_dir: str) -> dict[str, Any]:
    try:
        with open(os.path.join(output_dir, CONFIG)) as f:
            return yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError):
        return {}


_HEADLINE = {"loss", "reward", "reward_mean", "rewards/margins", "rewards/accuracies", "exact_match", "kl",
             "entropy", "response_length", "perplexity", "mean_token_accuracy"}


def is_headline(metric: str) -> bool:
    """The metrics the report shows first: losses, rewards, preference margin/accuracy, win rates,
    reasoning accuracy (anything named ``*accuracy*`` or ``*win_rate*``)."""
    bare = metric.removeprefix("eval_").removeprefix("eval/")
    return bare in _HEADLINE or "win_rate" in bare or bare.endswith("accuracy")


def before_after(metrics: dict[str, Any]) -> list[tuple[str, float, float]]:
    """Pairs the stages record: ``before_eval_X``/``eval_X``, ``X_start``/``X_end``, ``X_before``/``X_after``."""
    nums = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    out = []
    for k, v in nums.items():
        if k.startswith("before_eval_") and ("eval_" + k[len("before_eval_"):]) in nums:
            after = "eval_" + k[len("before_eval_"):]
            if keep_metric(after):
                out.append((after, v, nums[after]))
        for a, b in (("_start", "_end"), ("_before", "_after")):
            if k.endswith(a) and (k[: -len(a)] + b) in nums and keep_metric(k[: -len(a)]):
                out.append((k[: -len(a)], v, nums[k[: -len(a)] + b]))
    rank = ("loss", "reward", "margins", "accuracies", "accuracy", "exact_match", "win_rate", "perplexity")
    return sorted(out, key=lambda t: (next((i for i, r in enumerate(rank) if r in t[0]), len(rank)), t[0]))


def _stage_folder(output_dir: str, index: int, name: str, entry: dict) -> str:
    folder = entry.get("output_dir")
    if folder and os.path.isdir(folder):
        return folder
    return os.path.join(output_dir, f"{index:02d}_{name}")


def _resources(config: dict, settings: dict) -> dict[str, Any]:
    res = dict(config.get("resources") or {})
    res.update(settings.get("resources") or {})
    return res


def _warnings(stages: list[StageView], answers: dict) -> list[str]:
    out = []
    for s in stages:
        m = s.metrics
        if s.status.startswith("skipped"):
            out.append(f"{s.name}: {s.status} — its numbers come from the earlier run")
        elif s.status in ("failed", "not run"):
            out.append(f"{s.name}: {s.status}" + (f" — {s.error}" if s.error else ""))
        for key, value in m.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                continue
            if "truncated" in key:
                what = "share of" if isinstance(value, float) and value < 1 else "number of"
                out.append(f"{s.name}: {key} = {value:g} ({what} examples cut at the length limit)")
            elif re.search(r"masked|parse_fail|unparsed", key):
                out.append(f"{s.name}: {value:g} judgements could not be parsed and were masked ({key})")
            elif re.search(r"unusable|dropped", key):
                out.append(f"{s.name}: {value:g} rows were dropped ({key})")
            elif key == "weight_sync_mismatches":
                out.append(f"{s.name}: {value:g} weight pushes did not reach the generation actors")
        for metric, before, after in s.changes:
            if metric.endswith("loss") and after > before:
                out.append(f"{s.name}: {metric} rose {before:.4g} -> {after:.4g}")
    for col in answers.get("columns", []):
        if col.get("error"):
            out.append(f"answers after {col['stage']}: {col['error']}")
    if answers.get("judge_error"):
        out.append(f"judge: {answers['judge_error']}")
    return out


def collect(output_dir: str) -> RunView:
    """Read a run folder into a :class:`RunView` (missing files give empty sections, not errors)."""
    summary = read_json(os.path.join(output_dir, SUMMARY), {}) or {}
    config = read_config(output_dir)
    answers = read_json(os.path.join(output_dir, ANSWERS), {}) or {}
    entries = summary.get("stages", {})
    order = summary.get("stage_order") or config.get("stages") or list(entries)
    sections = config.get("stage_configs") or {}
    stages = []
    for i, name in enumerate(order, start=1):
        e = entries.get(name, {})
        settings = sections.get(name) or {}
        folder = _stage_folder(output_dir, i, name, e)
        metrics = e.get("metrics") or {}
        running = summary.get("status") not in ("completed",) and any(
            v.get("status") == "running" for v in entries.values())
        status = e.get("status") or ("pending" if running else "not run")
        if settings.get("enabled") is False:
            status = "disabled"
        stages.append(StageView(
            index=i, name=name, status=status, seconds=e.get("seconds"), folder=folder,
            model_path=e.get("model_path"), metrics=metrics, settings=settings,
            resources=_resources(config, settings), strategy=str(metrics.get("strategy", "")),
            changes=before_after(metrics), series=stage_series(folder), error=e.get("error", ""),
            adapter_path=e.get("adapter_path"), transcripts=read_transcripts(folder)))
    return RunView(
        output_dir=output_dir, status=summary.get("status", "running" if entries else "not started"),
        model=str(config.get("model_name_or_path", "")), total_seconds=summary.get("total_seconds"),
        final_model=summary.get("final_model"), stages=stages, answers=answers,
        warnings=_warnings(stages, answers), config=config)
