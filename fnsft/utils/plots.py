"""PNG plots of a stage's logged metrics, in the run report's layout: one metric per panel.

Each metric gets its own small panel and its own scale, so a large counter never flattens the
curves next to it; counters, clocks and rates (``total_flos``, token counts, learning rate,
runtimes, throughput) are left out, as in ``report.html``.
"""

from __future__ import annotations

import math
from typing import Optional

# Keys that never make a useful learning curve (kept in step with fnsft.report.curves).
_SKIP_EXACT = {"step", "epoch", "iteration", "total_flos", "num_input_tokens_seen", "num_tokens", "done",
               "learning_rate", "lr", "kl_coef", "trpo_accepted"}
_SKIP_PARTS = ("_runtime", "per_second", "flos", "time/", "_seconds", "_unix", "weight_sync", "global_step")
_FIRST = ("loss", "eval_loss", "reward", "reward_mean", "eval/reward", "eval_reward", "eval/exact_match",
          "rewards/margins", "eval_rewards/margins", "rewards/accuracies", "eval_rewards/accuracies",
          "kl", "entropy", "response_length", "grad_norm")
MAX_PANELS = 12


def keep_metric(key: str) -> bool:
    """Whether ``key`` is a learning curve worth a panel (not a counter, a clock or a rate)."""
    bare = key.removeprefix("eval_").removeprefix("eval/")
    if bare in _SKIP_EXACT or key.startswith("train_") or key.endswith("_s"):
        return False
    return not any(part in key for part in _SKIP_PARTS)


def plot_series(series: dict[str, list[tuple[float, float]]], path: str, title: str) -> Optional[str]:
    """One small panel per metric (at most ``MAX_PANELS``, headline metrics first), 3 per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    keys = [k for k in series if series[k] and keep_metric(k)]
    keys = [k for k in _FIRST if k in keys] + sorted(k for k in keys if k not in _FIRST)
    keys = keys[:MAX_PANELS]
    if not keys:
        return None
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.7 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        xs, ys = zip(*sorted(series[key]))
        ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, color="#2563eb")
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps and iterations are whole
        ax.tick_params(labelsize=8)
        ax.ticklabel_format(axis="y", useOffset=False, style="plain") if max(map(abs, ys)) < 1e5 else None
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_log_history(history: list[dict], path: str, title: str) -> Optional[str]:
    """HF ``log_history`` -> one panel per metric; ``before_eval_X`` starts the ``eval_X`` curve."""
    series: dict[str, list] = {}
    for entry in history:
        step = entry.get("step")
        if step is None:
            continue
        for k, v in entry.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                continue
            if k.startswith("before_eval_"):
                k = k[len("before_"):]
            if keep_metric(k):
                series.setdefault(k, []).append((step, v))
    return plot_series(series, path, f"{title} training")
