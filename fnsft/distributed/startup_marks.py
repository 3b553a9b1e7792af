"""Where a training stage's start-up goes: wall-clock marks from the driver and rank 0.

The driver notes when it launches the stage's Train job; rank 0 notes when its train function
starts (Ray Train's controller, worker actors and process group are up), when its libraries are
imported, its tokenizer, model and data are ready, its trainer is built, the engine is ready
(``on_train_begin``: DeepSpeed initialised, evaluation before training not yet run) and its first
step has ended. :func:`phase_seconds` turns the marks into the stage's ``timings``
(``pipeline_summary.json``), which ``benchmarks/startup.py`` prints. All processes run on clocks
of one machine or of NTP-synchronised nodes, so differences of ``time.time()`` are meaningful.
"""

from __future__ import annotations

import time

# Phase -> what it covers (the mark that ends it). Order matters: each phase starts at the
# previous mark.
PHASES = {
    "worker_group_start": "Ray Train controller, placement group, worker processes, process group",
    "worker_imports": "torch, transformers, TRL, PEFT, DeepSpeed imported in the worker",
    "model_load": "tokenizer and incoming weights loaded",
    "dataset": "rows fetched from the object store (tokenised ones when the driver prepared them)",
    "trainer_init": "the TRL trainer built (tokenisation there when the driver did not do it)",
    "engine_init": "trainer.train() up to the first step: DeepSpeed/accelerate set-up",
    "eval_before": "evaluation before training",
    "first_step": "the first optimizer step",
}


class Marks:
    """``marks("model_load")`` records that phase's end, now."""

    def __init__(self):
        self.points: list[tuple[str, float]] = []

    def __call__(self, name: str) -> None:
        self.points.append((name, time.time()))


def import_worker_libraries(job) -> None:
    """Import what a training worker will use, so their cost shows as one phase."""
    import transformers  # noqa: F401
    import trl  # noqa: F401

    if job.stage_config.use_peft:
        import peft  # noqa: F401
    if job.deepspeed is not None:
        import deepspeed  # noqa: F401


def marks_callback(marks: Marks):
    """A TrainerCallback that marks ``engine_init`` (train begins), ``eval_before`` and
    ``first_step`` (the first step's end)."""
    from transformers import TrainerCallback

    class StartupMarks(TrainerCallback):
        def __init__(self):
            self.stepped = False

        def on_train_begin(self, args, state, control, **kw):
            marks("engine_init")

        def on_step_begin(self, args, state, control, **kw):
            if not self.stepped and not any(n == "eval_before" for n, _ in marks.points):
                marks("eval_before")

        def on_step_end(self, args, state, control, **kw):
            if not self.stepped:
                self.stepped = True
                marks("first_step")

    return StartupMarks()


def phase_seconds(start: float, points: list) -> dict[str, float]:
    """``{"<phase>_s": seconds}`` from ``start`` through consecutive marks, plus
    ``startup_s`` (``start`` to the end of the first step)."""
    out: dict[str, float] = {}
    prev = start
    for name, t in points:
        out[f"{name}_s"] = round(t - prev, 3)
        prev = t
    if points:
        out["startup_s"] = round(points[-1][1] - start, 3)
    return out
