"""Experiment tracking for a whole pipeline: a parent run with one child run per stage.

``report_to`` (per stage, as in HF ``TrainingArguments``) names the sinks: ``tensorboard``,
``mlflow``, ``wandb``. The Train workers log live through HF's own callbacks; what they need
reaches them as environment variables, which Ray Train's runtime env forwards (every
``MLFLOW_*`` and ``WANDB_*`` variable of the driver, see ``fnsft.runtime.train_job``):

- MLflow: the driver creates the parent run (the resolved config as parameters) and, before each
  stage, a child run (``mlflow.parentRunId``) whose id it puts in ``MLFLOW_RUN_ID``; HF's
  ``MLflowCallback`` on rank 0 attaches to it. After the stage the driver adds the stage's summary
  metrics, and the per-iteration history for stages without HF callbacks (RL), then closes it.
  ``MLFLOW_TRACKING_URI`` / ``MLFLOW_EXPERIMENT_NAME`` choose the store and experiment
  (default experiment: ``fnsft``).
- W&B: one run per stage, named after it (``WANDB_NAME``, ``WANDB_JOB_TYPE``), in the group
  ``WANDB_RUN_GROUP`` (default: the pipeline run's name) of ``WANDB_PROJECT`` (default: ``fnsft``).
  HF's ``WandbCallback`` on rank 0 logs SFT/DPO live, with the stage's resolved section in the
  run's config (``fnsft.workers.tracking``); stages without HF callbacks (RL) are logged by
  the driver after the stage, from their per-iteration history. ``WANDB_MODE`` (``offline``:
  run files under ``WANDB_DIR``, ``wandb sync`` later), ``WANDB_API_KEY`` come from your
  environment.

Tracking problems are logged as warnings; they never stop the pipeline.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Optional

from fnsft.utils.redact import is_secret_name, redact_text

log = logging.getLogger("fnsft")


def flat_params(data: Any, prefix: str = "") -> dict[str, str]:
    """``{"stage_configs.sft.learning_rate": "0.0002", ...}``; credentials are never included."""
    out: dict[str, str] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if is_secret_name(k):
                continue
            out.update(flat_params(v, key))
    elif prefix:
        out[prefix] = redact_text(str(data))[:500]
    return out


class Tracking:
    """One pipeline run's trackers. ``sinks``: the union of the stages' ``report_to``."""

    def __init__(self, config: dict[str, Any], sinks: set[str], output_dir: str):
        self.config, self.sinks, self.output_dir = config, sinks, output_dir
        self.name = f"{os.path.basename(os.path.abspath(output_dir))}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.client = None
        self.experiment_id: Optional[str] = None
        self.parent: Optional[str] = None
        self.children: dict[str, str] = {}
        self._saved_env: dict[str, Optional[str]] = {}
        self.wandb_settings: dict[str, dict] = {}  # stages reporting to W&B, while they run
        self._run_env: list[str] = []  # variables this run set, removed at its end

    # Pipeline -----------------------------------------------------------------------------
    def start(self) -> None:
        if "wandb" in self.sinks:  # defaults for this run only (a next run in this process: its own group)
            for key, value in (("WANDB_RUN_GROUP", self.name), ("WANDB_PROJECT", "fnsft")):  # HF: "huggingface"
                if key not in os.environ:
                    os.environ[key] = value
                    self._run_env.append(key)
        if "mlflow" not in self.sinks:
            return
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient()
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "fnsft")
        exp = self.client.get_experiment_by_name(name)
        self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(name)
        run = self.client.create_run(self.experiment_id, run_name=self.name,
                                     tags={"fnsft.output_dir": os.path.abspath(self.output_dir)})
        self.parent = run.info.run_id
        self._log_params(self.parent, flat_params(self.config))
        log.info("MLflow: run %s (%s) in experiment %s", self.name, self.parent, name)

    def end(self, status: str = "FINISHED") -> None:
        for key in self._run_env:
            os.environ.pop(key, None)
        self._run_env = []
        if self.client and self.parent:
            self.client.set_terminated(self.parent, status)

    # Stages -------------------------------------------------------------------------------
    def stage_start(self, name: str, report_to: list[str], settings: dict[str, Any]) -> None:
        """Before a stage runs: its child run and the environment its workers will see."""
        env = {}
        if "wandb" in report_to:
            env.update(WANDB_NAME=name, WANDB_JOB_TYPE=name)
            self.wandb_settings[name] = settings
        if "mlflow" in report_to and self.client:
            run = self.client.create_run(self.experiment_id, run_name=name,
                                         tags={"mlflow.parentRunId": self.parent, "fnsft.stage": name})
            self.children[name] = run.info.run_id
            self._log_params(run.info.run_id, {f"stage.{k}": v for k, v in flat_params(settings).items()})
            env.update(MLFLOW_RUN_ID=run.info.run_id, MLFLOW_EXPERIMENT_ID=self.experiment_id)
        for k, v in env.items():
            self._saved_env.setdefault(k, os.environ.get(k))
            os.environ[k] = v

    def stage_end(self, name: str, status: str, metrics: dict[str, Any], stage_dir: str) -> None:
        """After a stage: its summary metrics (and, for stages without HF callbacks, its history)."""
        for k, old in self._saved_env.items():
            if old is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = old
        self._saved_env = {}
        if name in self.wandb_settings:
            self._wandb_after_stage(name, self.wandb_settings.pop(name), metrics, stage_dir)
        run_id = self.children.get(name)
        if not run_id:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        nums = {k: float(v) for k, v in metrics.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)}
        items = [Metric(_key(f"summary/{k}"), v, now, 0) for k, v in nums.items()]
        if not os.path.isfile(os.path.join(stage_dir, "log_history.json")):
            from fnsft.report.curves import stage_series  # no HF callback logged these live

            items += [Metric(_key(k), y, now, int(x)) for k, pts in stage_series(stage_dir).items() for x, y in pts]
        for i in range(0, len(items), 900):  # MLflow takes at most 1000 metrics per batch
            self.client.log_batch(run_id, metrics=items[i:i + 900])
        self.client.set_terminated(run_id, "FINISHED" if status == "completed" else "FAILED")

    def _wandb_after_stage(self, name: str, settings: dict, metrics: dict[str, Any], stage_dir: str) -> None:
        """A stage without HF callbacks (RL): its W&B run, logged here from its history."""
        if os.path.isfile(os.path.join(stage_dir, "log_history.json")):
            return  # logged live by HF's WandbCallback in the worker
        import wandb

        from fnsft.workers.tracking import public_settings
        from fnsft.report.curves import stage_series

        run = wandb.init(project=os.environ.get("WANDB_PROJECT"), group=os.environ.get("WANDB_RUN_GROUP"),
                         name=name, job_type=name, reinit="create_new",
                         config={"fnsft": {"stage": name, "stage_config": public_settings(settings)}})
        try:
            rows: dict[int, dict[str, float]] = {}
            for key, pts in stage_series(stage_dir).items():
                for x, y in pts:
                    rows.setdefault(int(x), {})[key] = y
            for step in sorted(rows):
                run.log(rows[step], step=step)
            run.summary.update({f"summary/{k}": float(v) for k, v in metrics.items()
                                if isinstance(v, (int, float)) and not isinstance(v, bool)})
        finally:
            run.finish()

    def _log_params(self, run_id: str, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(_key(k), v) for k, v in params.items()]
        for i in range(0, len(items), 90):  # at most 100 params per batch
            self.client.log_batch(run_id, params=items[i:i + 90])


def _key(name: str) -> str:
    """MLflow keys allow letters, digits and ``_ - . space : /``."""
    return "".join(c if c.isalnum() or c in "_-. :/" else "_" for c in name)[:250]


def start_tracking(config: dict[str, Any], report_to: list[list[str]], output_dir: str) -> Optional[Tracking]:
    """A :class:`Tracking` when any stage reports to mlflow or wandb, else None."""
    sinks = {s for sinks in report_to for s in sinks} & {"mlflow", "wandb"}
    if not sinks:
        return None
    tracking = Tracking(config, sinks, output_dir)
    tracking.start()
    return tracking
