"""Experiment tracking inside a Train worker (the driver side is ``fnsft.report.tracking``).

HF's ``MLflowCallback`` (``report_to: [mlflow]``) attaches to the stage's child run through
``MLFLOW_RUN_ID`` and ends it when training ends. The stage then evaluates once more; with no
active run, MLflow's fluent API would open a new, stray run for those metrics. So the run is
kept open until the worker is done, then ended (which also flushes MLflow's async logging).
"""

from __future__ import annotations

import sys


def hold_mlflow_run(trainer) -> None:
    """Keep HF's MLflow run open past ``on_train_end`` (see the module docstring)."""
    from transformers import TrainerCallback
    from transformers.integrations import MLflowCallback

    callbacks = trainer.callback_handler.callbacks
    target = next((cb for cb in callbacks if isinstance(cb, MLflowCallback)), None)
    if target is None:
        return

    class HoldRun(TrainerCallback):
        def on_train_end(self, args, state, control, **kw):
            target._auto_end_run = False

    callbacks.insert(callbacks.index(target), HoldRun())  # runs just before the MLflow callback


def release_mlflow_run() -> None:
    """End this worker's MLflow run, if it has one."""
    if sys.modules.get("mlflow") is not None:  # None: skipped in this worker (fnsft.utils.imports)
        import mlflow

        if mlflow.active_run():
            mlflow.end_run()
