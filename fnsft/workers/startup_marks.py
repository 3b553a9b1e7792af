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
    """``marks("model_load")`` records that phase's end, now: wall clock and this process's CPU
    time (``process_time`` counts from the process's start, so the first mark holds what the
    process spent before the train function: Ray's worker start-up and Train's set-up)."""

    def __init__(self):
        self.points: list[tuple[str, float, float]] = []

    def __call__(self, name: str) -> None:
        self.points.append((name, time.time(), time.process_time()))


def import_worker_libraries(job) -> None:
    """Import what a training worker will use, so their cost shows as one phase; then
    :func:`freeze_long_lived_objects`."""
    import transformers  # noqa: F401
    import trl  # noqa: F401

    if job.stage_config.use_peft:
        import peft  # noqa: F401
    if job.deepspeed is not None:
        import deepspeed  # noqa: F401
    freeze_long_lived_objects()


def freeze_long_lived_objects(collect_first: bool = False) -> None:
    """Move every object alive now (the imported libraries: ~500k objects) out of the cyclic
    garbage collector's reach (``gc.freeze``, as vLLM does after start-up). They live as long as
    the process anyway; each full collection walked them all: accelerate's ``free_memory`` at the
    start of ``trainer.train()`` runs one (0.3-0.4 s of a core here), and Python runs more as
    training allocates. A frozen object is still freed when its last reference goes, but one
    that ends up in a reference cycle stays. Right after the imports only ~100 objects are
    garbage, so no collection first (it would cost the same walk); after a set-up that built
    models and may have left cycles, ``collect_first``."""
    import gc

    if collect_first:
        gc.collect()
    gc.freeze()


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
            if not self.stepped and not any(p[0] == "eval_before" for p in marks.points):
                marks("eval_before")

        def on_step_end(self, args, state, control, **kw):
            if not self.stepped:
                self.stepped = True
                marks("first_step")

    return StartupMarks()


def phase_seconds(start: float, points: list) -> dict[str, float]:
    """``{"<phase>_s": wall seconds, "<phase>_cpu_s": rank 0's CPU seconds}`` from ``start``
    through consecutive marks, plus ``startup_s`` (``start`` to the last mark). CPU time does
    not depend on what else the machine runs; wall time does."""
    out: dict[str, float] = {}
    prev, prev_cpu = start, 0.0
    for name, t, cpu in points:
        out[f"{name}_s"] = round(t - prev, 3)
        out[f"{name}_cpu_s"] = round(cpu - prev_cpu, 3)
        prev, prev_cpu = t, cpu
    if points:
        out["startup_s"] = round(points[-1][1] - start, 3)
    return out
