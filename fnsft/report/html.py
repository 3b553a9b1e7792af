"""Render a :class:`RunView` as one self-contained HTML page (inline CSS and SVG, no scripts)."""

from __future__ import annotations

import time
from html import escape
from typing import Any

from fnsft.report.collect import RunView, StageView, is_headline
from fnsft.report.placement import placement_line
from fnsft.report.style import CSS
from fnsft.report.svg import fmt, line_panel
from fnsft.report.transcripts import transcripts_html

COLORS = ["#2563eb", "#db2777", "#059669", "#d97706", "#7c3aed", "#0891b2", "#65a30d", "#dc2626"]
_LOWER_IS_BETTER = ("loss", "perplexity")
_HIGHER_IS_BETTER = ("reward", "margins", "accurac", "exact_match", "win_rate")
_MAX_PANELS = 8


def _on_disk(s) -> str:
    """Where a stage's model is: its merged copy, else its LoRA adapter (the copy rebuilds from it)."""
    if s.model_path:
        return s.model_path
    return f"{s.adapter_path} (LoRA adapter)" if s.adapter_path else "—"


def _status(status: str) -> str:
    kind = status.split(" ")[0]
    cls = kind if kind in ("completed", "failed", "running", "skipped") else "other"
    return f'<span class="status s-{cls}">{escape(status)}</span>'


def _duration(seconds) -> str:
    if not isinstance(seconds, (int, float)):
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


def _redact(key: str, value: Any) -> Any:
    """Settings never show credentials (they only come from env vars, but a config may carry one)."""
    from fnsft.utils.redact import MASK, is_secret_name, redact

    if is_secret_name(key.rsplit(".", 1)[-1]) and value:
        return MASK
    return redact(value)


def _flat(prefix: str, value: Any, out: list) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out.append((prefix, _redact(prefix, value)))


def _timeline(run: RunView) -> str:
    """Stages as bars on one time axis (width ∝ duration), then the table with the details."""
    known = [s.seconds for s in run.stages if isinstance(s.seconds, (int, float))]
    total = sum(known) or 1.0
    bars = []
    for i, s in enumerate(run.stages):
        secs = s.seconds if isinstance(s.seconds, (int, float)) else 0.0
        color = COLORS[i % len(COLORS)] if s.status.startswith("completed") else "#9ca3af"
        bars.append(f'<div class="bar" style="flex: {max(secs / total, 0.08):.3f} 1 0; background: {color}" '
                    f'title="{escape(s.name)}: {escape(s.status)}">{escape(s.name)} · {escape(_duration(s.seconds))}</div>')
    rows = []
    for s in run.stages:
        res = s.resources
        cpus = res.get("cpus_per_worker")
        threads = s.metrics.get("torch_threads")
        # cpus_per_worker null: the node's CPUs split between the workers (the plan line says how).
        share = f"{cpus:g} CPU" if isinstance(cpus, (int, float)) else "auto CPU"
        workers = f"{res.get('num_workers', 1)} worker(s) × {share}" + (f", {threads} torch thread(s)" if threads else "")
        if res.get("use_gpu"):
            workers += f" + {res.get('gpus_per_worker', 1)} GPU"
        if s.metrics.get("compute_dtype"):
            workers += f", {s.metrics['compute_dtype']}"
        where = placement_line(s.metrics)
        where = f"<br><span class=muted>{escape(where)}</span>" if where else ""
        rows.append(
            f"<tr><td>{s.index}</td><td><b>{escape(s.name)}</b></td><td>{_status(s.status)}</td>"
            f"<td class=num>{escape(_duration(s.seconds))}</td><td>{escape(workers)}{where}</td>"
            f"<td>{escape(s.strategy or '—')}</td><td class=path>{escape(_on_disk(s))}</td></tr>")
    return (f'<div class="card"><div class="timeline">{"".join(bars)}</div>'
            f'<table><tr><th>#</th><th>stage</th><th>status</th><th>duration</th>'
            f'<th>resources</th><th>strategy</th><th>model on disk</th></tr>{"".join(rows)}</table></div>')


def _change_cell(metric: str, before: float, after: float) -> str:
    lower = any(w in metric for w in _LOWER_IS_BETTER)
    higher = any(w in metric for w in _HIGHER_IS_BETTER) and not lower
    cls = "" if after == before or not (lower or higher) else ("better" if (after < before) == lower else "worse")
    return (f"<tr><td>{escape(metric)}</td><td class=num>{fmt(before)}</td>"
            f"<td class=num>→ <span class='{cls}'>{fmt(after)}</span></td></tr>")


def _key_numbers(s: StageView) -> str:
    head = [c for c in s.changes if is_headline(c[0])]
    rest = [c for c in s.changes if not is_headline(c[0])]
    rows = [_change_cell(m, b, a) for m, b, a in head]
    for key in ("train_loss", "global_step", "iterations", "train_rows", "eval_rows", "truncated_examples",
                "algorithm", "reference", "dataset_format"):
        v = s.metrics.get(key)
        if v is not None:
            value = fmt(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)
            value = value if len(value) <= 60 else value[:57] + "..."
            rows.append(f"<tr><td>{escape(key)}</td><td class=num colspan=2>{escape(value)}</td></tr>")
    if not rows and not rest:
        return "<p class=muted>No metrics recorded.</p>"
    out = f"<table><tr><th>metric</th><th>before</th><th>after</th></tr>{''.join(rows)}</table>"
    if rest:
        more = "".join(_change_cell(m, b, a) for m, b, a in rest)
        out += f"<details><summary>{len(rest)} more before → after</summary><table>{more}</table></details>"
    return out


def _settings(s: StageView) -> str:
    items: list = []
    _flat("", s.settings, items)
    if not items:
        return ""
    body = "".join(f"<div><span class=k>{escape(k)}:</span> <code>{escape(str(v))}</code></div>"
                   for k, v in items)
    return f"<details><summary>settings (stage_configs.{escape(s.name)}, resolved)</summary>" \
           f"<div class=settings>{body}</div></details>"


def _stage(s: StageView, color: str) -> str:
    head = [k for k in s.series if is_headline(k)][:_MAX_PANELS]
    rest = [k for k in s.series if k not in head]
    panels = "".join(line_panel(k, s.series[k], color) for k in head)
    curves = f'<div class="panels">{panels}</div>' if head else "<p class=muted>No curves recorded.</p>"
    if rest:
        extra = "".join(line_panel(k, s.series[k], color) for k in rest)
        curves += f'<details><summary>{len(rest)} more curves</summary><div class="panels">{extra}</div></details>'
    return (f'<div class="card" id="stage-{escape(s.name)}"><div class="stagehead"><h3>{s.index}. '
            f'{escape(s.name)}</h3>{_status(s.status)}<span class=muted>{escape(_duration(s.seconds))}</span>'
            f'<span class=muted>{escape(s.strategy)}</span><span class="muted path">{escape(s.folder)}</span></div>'
            f'<div class="two"><div>{_key_numbers(s)}</div><div>{curves}</div></div>{transcripts_html(s.transcripts)}'
            f'{_settings(s)}</div>')


def _answers(run: RunView) -> str:
    a = run.answers
    cols = a.get("columns") or []
    prompts = a.get("prompts") or []
    if not cols or not prompts:
        return "<p class=muted>No answers yet (report.enabled false, no prompts, or no stage finished).</p>"
    head = "".join(f"<th>{escape(c['stage'])}<br><span class=fp>{escape(c.get('label', ''))}</span></th>"
                   for c in cols)
    rows = []
    for i, p in enumerate(prompts):
        cells = "".join(f"<td>{escape(_nth(c.get('answers'), i) or c.get('error', ''))}</td>" for c in cols)
        rows.append(f"<tr><td class=prompt>{escape(p)}</td>{cells}</tr>")
    wins = a.get("win_rates") or {}
    if wins:
        cells = "".join(f"<td>{_win(wins.get(c['stage']))}</td>" for c in cols)
        rows.append(f"<tr><td class=prompt>judge: win rate over the previous column</td>{cells}</tr>")
    note = (f"greedy, at most {a.get('max_new_tokens', '?')} new tokens, "
            f"{escape(a.get('prompt_source', ''))}; prompt format: {escape(a.get('format', '?'))}")
    return (f'<div class="card"><p class=muted>{note}</p><div style="overflow-x:auto">'
            f'<table class="answers"><tr><th>prompt</th>{head}</tr>{"".join(rows)}</table></div></div>')


def _nth(items, i: int) -> str:
    return items[i] if items and i < len(items) else ""


def _win(w) -> str:
    if not isinstance(w, dict):
        return "—"
    return escape(f"{w.get('win_rate', 0):.0%} ({w.get('n', 0)} judged, both orders; {w.get('masked', 0)} masked)")


def render(run: RunView) -> str:
    """The whole page."""
    warnings = ""
    if run.warnings:
        items = "".join(f"<li>{escape(w)}</li>" for w in run.warnings)
        warnings = f'<h2>Worth a look</h2><div class="card warnings"><ul>{items}</ul></div>'
    stages = "".join(_stage(s, COLORS[i % len(COLORS)]) for i, s in enumerate(run.stages))
    final = f" · final model <code>{escape(run.final_model)}</code>" if run.final_model else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>fnsft run report — {escape(run.output_dir)}</title><style>{CSS}</style></head>
<body>
<h1>fnsft run report</h1>
<div class="sub">model <code>{escape(run.model)}</code> · run {_status(run.status)} ·
total {escape(_duration(run.total_seconds))} · <code>{escape(run.output_dir)}</code>{final} ·
written {escape(time.strftime('%Y-%m-%d %H:%M:%S'))}</div>
{warnings}
<h2>Pipeline</h2>
{_timeline(run)}
<h2>Answers after each stage</h2>
{_answers(run)}
<h2>Stages</h2>
{stages}
</body></html>
"""
