"""PNG plots of a stage's logged metrics (loss, eval loss, rewards...)."""

from __future__ import annotations

from typing import Optional

_PANELS = [
    ("loss", ["loss", "eval_loss"]),
    ("preference", ["rewards/margins", "eval_rewards/margins", "rewards/accuracies", "eval_rewards/accuracies"]),
    ("rewards", ["rewards/chosen", "rewards/rejected"]),
    ("log-ratio (KL-style)", ["logratios/chosen", "logratios/rejected"]),
    ("log-probs", ["logps/chosen", "logps/rejected"]),
    ("reward", ["reward_mean", "reward", "eval_reward"]),
    ("kl", ["kl"]),
]


def plot_series(series: dict[str, list[tuple[float, float]]], path: str, title: str) -> Optional[str]:
    """One subplot per non-empty panel; ``series`` maps metric name -> [(step, value)]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(t, [k for k in keys if series.get(k)]) for t, keys in _PANELS]
    panels = [(t, ks) for t, ks in panels if ks]
    other = [k for k in series if series[k] and not any(k in ks for _, ks in panels)]
    if not panels and not other:
        return None
    if other:
        panels.append(("other", other[:6]))
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.6 * len(panels)), squeeze=False)
    for ax, (name, keys) in zip(axes[:, 0], panels):
        for k in keys:
            xs, ys = zip(*series[k])
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=k)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_log_history(history: list[dict], path: str, title: str) -> Optional[str]:
    series: dict[str, list] = {}
    for entry in history:
        step = entry.get("step")
        if step is None:
            continue
        for k, v in entry.items():
            if k in ("step", "epoch") or not isinstance(v, (int, float)) or k.startswith("train_"):
                continue
            if k.startswith("before_eval_"):  # the evaluation before training starts the eval_ curve
                k = k[len("before_"):]
            if k.removeprefix("eval_") in ("learning_rate", "grad_norm", "num_input_tokens_seen", "num_tokens") \
                    or k.endswith("_runtime") or "per_second" in k:
                continue
            series.setdefault(k, []).append((step, v))
    return plot_series(series, path, f"{title} training")
