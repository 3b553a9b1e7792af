"""Small inline SVG line charts: one metric per panel, readable axes, no JavaScript.

The report must open from a file on a machine with no network, so it draws its own charts
instead of loading a plotting library.
"""

from __future__ import annotations

import math
from html import escape

W, H = 270, 165
LEFT, RIGHT, TOP, BOTTOM = 48, 10, 24, 28


def nice_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    """About ``n`` round tick values covering [lo, hi] (1, 2, 5 x 10^k steps)."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks, t = [], first
    while t <= hi + step * 1e-6:
        ticks.append(round(t, 12))
        t += step
    return ticks


def fmt(v: float) -> str:
    """A short number for axes and tables: 0.0123, 1.23e-05, 1234, 1.2e+06."""
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e5 or a < 1e-3:
        return f"{v:.2g}"
    if a >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}"


def tick_labels(ticks: list[float]) -> list[str]:
    """Labels with as many decimals as the tick spacing needs (no "6.24 6.24 6.24")."""
    if len(ticks) < 2:
        return [fmt(t) for t in ticks]
    step = abs(ticks[1] - ticks[0])
    big = max(abs(t) for t in ticks)
    if big >= 1e5 or (big and big < 1e-3):
        return [f"{t:.2g}" if t else "0" for t in ticks]
    decimals = max(0, -math.floor(math.log10(step)) + (0 if round(step / 10 ** math.floor(math.log10(step)), 6)
                                                          in (1.0, 2.0, 5.0) else 1))
    labels = [f"{t:.{min(decimals, 4)}f}" for t in ticks]
    if len(set(labels)) < len(labels):  # a nearly flat curve: label only its two ends
        return [f"{t:.6g}" if i in (0, len(ticks) - 1) else "" for i, t in enumerate(ticks)]
    return labels


def _range(values: list[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if hi == lo:  # a flat line sits mid-panel
        pad = abs(lo) * 0.1 or 1.0
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.08
    return lo - pad, hi + pad


def line_panel(title: str, points: list[tuple[float, float]], color: str = "#2563eb") -> str:
    """One ``<svg>`` panel with the metric's curve; a single point is drawn as a dot."""
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x0, x1 = (min(xs), max(xs)) if max(xs) > min(xs) else (min(xs) - 1, max(xs) + 1)
    y0, y1 = _range(ys)
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def px(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return TOP + (1 - (y - y0) / (y1 - y0)) * ph

    out = [f'<svg class="panel" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
           f'aria-label="{escape(title)}">',
           f'<text x="{LEFT}" y="15" class="ptitle">{escape(title)}</text>']
    yt = [t for t in nice_ticks(y0, y1) if y0 <= t <= y1]
    for t, label in zip(yt, tick_labels(yt)):
        y = py(t)
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                   f'<text x="{LEFT - 4}" y="{y + 3:.1f}" class="ytick">{label}</text>')
    for t in nice_ticks(x0, x1, 5):
        if x0 <= t <= x1 and float(t).is_integer():
            x = px(t)
            out.append(f'<text x="{x:.1f}" y="{H - BOTTOM + 14}" class="xtick">{fmt(t)}</text>')
    out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{TOP + ph}" y2="{TOP + ph}" class="axis"/>')
    out.append(f'<text x="{W - RIGHT}" y="{H - 3}" class="xlabel">step</text>')
    path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
    if len(points) > 1:
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.8"/>')
    if len(points) <= 30:
        out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.6" fill="{color}"/>' for x, y in points]
    last = points[-1][1]
    out.append(f'<text x="{W - RIGHT}" y="15" class="plast">last {fmt(last)}</text>')
    out.append("</svg>")
    return "".join(out)
