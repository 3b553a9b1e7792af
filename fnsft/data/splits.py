"""The held-out evaluation rows of a stage: how many, which ones, and why (YAML ``eval_split``,
``eval_max_rows``, ``eval_dataset_path``).

Evaluation runs before and after training on every held-out row, so its cost is paid before the
first step: 10 % of a 20,000-row file is 2,000 rows, minutes on a CPU. The held-out share is
therefore capped at ``eval_max_rows`` (default 256): a loss averaged over a few hundred rows is
already a steady figure, and the time to the first step no longer grows with the dataset.
Pure functions over lists; the training stages, CoT distillation and the run report (which
shows the stage's own held-out prompts) share them, so they agree on the rows.
"""

from __future__ import annotations

import random
from typing import NamedTuple, Optional

# The default of ``eval_max_rows``: enough rows for a steady mean loss, few enough that the
# evaluation before training takes seconds rather than minutes on a CPU.
DEFAULT_EVAL_MAX_ROWS = 256


class HeldOut(NamedTuple):
    """The rows a stage trains on, the rows it evaluates on, and one line saying why so many."""

    train: list
    eval: list
    reason: str


def held_out_count(n_rows: int, eval_split: float, eval_max_rows: Optional[int]) -> tuple[int, str]:
    """How many of ``n_rows`` to hold out: ``eval_split`` of them, at most ``eval_max_rows``
    (None: no cap); none when ``eval_split`` is 0 or there are fewer than 4 rows. Also the why."""
    if eval_split <= 0:
        return 0, "eval_split: 0, no held-out rows"
    if n_rows < 4:
        return 0, f"only {n_rows} rows, none held out"
    share = max(1, int(round(n_rows * eval_split)))
    if eval_max_rows is not None and share > eval_max_rows:
        return eval_max_rows, (f"{eval_max_rows} of {n_rows} rows held out: eval_split {eval_split:g} would be "
                               f"{share}, capped by eval_max_rows: {eval_max_rows} (null: no cap)")
    return share, f"{share} of {n_rows} rows held out (eval_split {eval_split:g})"


def split_held_out(rows: list, eval_split: float, eval_max_rows: Optional[int], seed: int) -> HeldOut:
    """``rows`` shuffled by ``seed``; the first :func:`held_out_count` of them are held out."""
    n_eval, reason = held_out_count(len(rows), eval_split, eval_max_rows)
    if not n_eval:
        return HeldOut(rows, [], reason)
    shuffled = rows[:]
    random.Random(seed).shuffle(shuffled)
    return HeldOut(shuffled[n_eval:], shuffled[:n_eval], reason)


def cap_eval_rows(rows: list, eval_max_rows: Optional[int], source: str) -> HeldOut:
    """An ``eval_dataset_path``'s rows: its first ``eval_max_rows`` (None: all of them)."""
    if eval_max_rows is not None and len(rows) > eval_max_rows:
        return HeldOut([], rows[:eval_max_rows], f"the first {eval_max_rows} of {len(rows)} rows of {source} "
                                                 f"(eval_max_rows: {eval_max_rows}; null: all)")
    return HeldOut([], rows, f"{len(rows)} rows of {source}")


def describe_eval_plan(eval_dataset_path: Optional[str], eval_split: float, eval_max_rows: Optional[int],
                       what: str = "") -> str:
    """The plan's ``eval`` line: where the held-out rows come from and how many at most."""
    cap = f", at most {eval_max_rows} rows (eval_max_rows)" if eval_max_rows is not None else ""
    if eval_dataset_path:
        return f"{eval_dataset_path}{cap}"
    if not eval_split:
        return "none"
    return f"{eval_split:.0%}{what} held out{cap}"
