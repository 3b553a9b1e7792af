"""The ranges of numeric settings, by name: one table for every section that uses the name.

A setting means the same thing wherever it appears (``logging_steps`` in SFT, DPO and RL;
``num_replicas`` in every role), as in TRL's and HF's configs, so its accepted range is declared
once here and checked when the YAML is parsed (:func:`fnsft.config.parse.parse_dataclass`), for
values the user gave. A stage's own cross-field checks stay in its ``validate_config``.
Non-finite numbers (``.nan``, ``.inf``) are refused for every number (:func:`finite`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

from fnsft.errors import ConfigError


@dataclass(frozen=True)
class Range:
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False  # low itself is not accepted
    high_open: bool = False
    note: str = ""

    def accepts(self, v: float) -> bool:
        if self.low is not None and (v < self.low or (self.low_open and v == self.low)):
            return False
        return not (self.high is not None and (v > self.high or (self.high_open and v == self.high)))

    def describe(self) -> str:
        lo = None if self.low is None else (f"> {self.low:g}" if self.low_open else f">= {self.low:g}")
        hi = None if self.high is None else (f"< {self.high:g}" if self.high_open else f"<= {self.high:g}")
        text = " and ".join(p for p in (lo, hi) if p)
        if lo and hi:
            text = (f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}")
        return text + (f" ({self.note})" if self.note else "")


def at_least(n: float, note: str = "") -> Range:
    return Range(low=n, note=note)


def above(n: float, note: str = "") -> Range:
    return Range(low=n, low_open=True, note=note)


BOUNDS: dict[str, Range] = {
    # training loop
    "logging_steps": at_least(1),
    "save_steps": at_least(0, "0: never"),
    "eval_steps": at_least(1, "null: at the end"),
    "max_train_samples": at_least(1, "null: all rows"),
    "warmup_steps": at_least(0, "steps, or a share of all steps below 1"),
    "max_grad_norm": at_least(0, "0: no clipping"),
    "weight_decay": at_least(0),
    "seed": at_least(0),
    # LoRA
    "lora_r": at_least(1),
    "lora_alpha": above(0),
    "lora_dropout": Range(0, 1, high_open=True),
    # resources and roles
    "num_replicas": at_least(1),
    "num_gpus": at_least(0),
    "num_cpus": at_least(0),
    "max_failures": at_least(-1, "-1: restart forever"),
    # RL
    "clip_range": above(0),
    "epsilon": above(0),
    "epsilon_high": above(0),
    "max_resample": at_least(0),
    "overlong_buffer": at_least(0, "0: off"),
    "overlong_penalty_factor": at_least(0),
    "clip_range_value": above(0, "null: off"),
    "gamma": Range(0, 1),
    "lam": Range(0, 1),
    "top_k": at_least(0, "0: off"),
    "vf_coef": at_least(0),
    "entropy_coef": at_least(0),
    "kl_horizon": above(0),
    "role_timeout_s": above(0),
    # judges and API backends (OpenAI's API accepts at most 20 alternatives per token)
    "top_logprobs": Range(0, 20, note="0: parse the reply's text"),
    "max_judge_calls": at_least(0, "0: no cap"),
    "max_calls": at_least(1, "null: no cap"),
    "max_retries": at_least(0),
    "timeout_s": above(0),
    "retry_budget_s": above(0),
    "max_retry_after_s": above(0),
    "max_tokens": at_least(1),
}


# Where one name means different things in different sections: the section's own range, by the
# key's last two parts (a local Ray of no CPUs can run nothing; a role actor may hold none).
SECTION_BOUNDS: dict[str, Range] = {
    "ray.num_cpus": at_least(1, "null: this machine's cores"),
    "ray.num_gpus": at_least(0),
}


def finite(value: float, path: str) -> float:
    """``value`` unless it is NaN or infinite (YAML's ``.nan``/``.inf``)."""
    if not math.isfinite(value):
        raise ConfigError(f"{path}: must be a finite number (got {value!r})")
    return value


def check_bounds(name: str, value: Any, path: str) -> None:
    """One line when ``value`` (a number the user gave for setting ``name``) is out of its range."""
    rng = SECTION_BOUNDS.get(".".join(path.split(".")[-2:])) or BOUNDS.get(name)
    if rng is None or value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if not rng.accepts(value):
        raise ConfigError(f"{path}: must be {rng.describe()} (got {value!r})")
