"""Experiment tracking inside a Train worker (the driver side is ``fnsft.report.tracking``).

HF's ``MLflowCallback`` (``report_to: [mlflow]``) attaches to the stage's child run through
``MLFLOW_RUN_ID`` and ends it when training ends. The stage then evaluates once more; with no
active run, MLflow's fluent API would open a new, stray run for those metrics. So the run is
kept open until the worker is done, then ended (which also flushes MLflow's async logging).

HF's ``WandbCallback`` (``report_to: [wandb]``) opens rank 0's run (name, group and project from
the ``WANDB_*`` variables the driver set) and logs the ``TrainingArguments``; the stage's own
resolved section is added to the run's config, and the run is finished explicitly when the
worker is done: Ray ends a finished worker's process, which would cut W&B's upload short.
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


def public_settings(value):
    """A stage's settings without credentials (:mod:`fnsft.utils.redact`: secret names left out,
    keys naming an env var, ``*_env``, kept; URLs and known secret values masked)."""
    from fnsft.utils.redact import is_secret_name, redact_text

    if isinstance(value, dict):
        return {k: public_settings(v) for k, v in value.items() if not is_secret_name(k)}
    if isinstance(value, (list, tuple)):
        return [public_settings(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value if isinstance(value, (int, float, bool)) or value is None else redact_text(str(value))


def log_stage_config_to_wandb(trainer, stage_name: str, settings: dict) -> None:
    """Add the stage's resolved section (``fnsft: {stage, stage_config}``) to rank 0's W&B run."""
    from transformers import TrainerCallback
    from transformers.integrations import WandbCallback

    callbacks = trainer.callback_handler.callbacks
    target = next((cb for cb in callbacks if isinstance(cb, WandbCallback)), None)
    if target is None:
        return
    config = {"fnsft": {"stage": stage_name, "stage_config": public_settings(settings)}}

    class StageConfig(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            import wandb

            if state.is_world_process_zero and wandb.run is not None:
                wandb.config.update(config, allow_val_change=True)

    callbacks.insert(callbacks.index(target) + 1, StageConfig())  # after the callback opened the run


def release_wandb_run() -> None:
    """Finish this worker's W&B run, if it has one (flushes it before Ray ends the process)."""
    wandb = sys.modules.get("wandb")  # None too when fnsft.utils.imports marked it unused
    if wandb is not None and wandb.run is not None:
        wandb.finish()
