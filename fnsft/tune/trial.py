"""One Tune trial: run the pipeline's trial stages with the sampled values, report the metrics.

A trial is a Tune *function trainable* (Train V2 runs inside it): it holds almost no CPU
itself, and each stage it runs starts its own Ray Train job, whose workers ask for the real
CPUs/GPUs. Imported only inside trials and by the sweep driver, never by ``--dry_run``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback

from fnsft.errors import StageError
from fnsft.tune.results import COMPLETED, SECONDS
from fnsft.tune.space import with_values


@dataclass
class TrialSpec:
    """What every trial needs (sent once through the object store by ``tune.with_parameters``)."""

    raw: dict  # the run's config, without tune:
    tune_dir: str  # <output_dir>/tune; trial <id> writes to <tune_dir>/trial_<id>
    cwd: str  # the driver's folder: relative data paths in the config are read from it
    select: list[str]  # stages the trial's plan selects (shared ones are skipped as finished)
    trial_stages: list[str]  # stages the trial actually runs
    metric: str
    reused: dict[str, dict] = field(default_factory=dict)  # manifest entries of finished stages
    concurrent: int = 1  # trials at once: they split the automatic CPU share


def trial_dir(tune_dir: str, trial_id: str) -> str:
    return os.path.join(tune_dir, f"trial_{trial_id}")


def flatten_metrics(summary: dict, stages: list[str]) -> dict[str, float]:
    """``{stage: {metrics: {eval_loss: ..}}}`` -> ``{"stage/eval_loss": ..}`` (numbers only)."""
    out: dict[str, float] = {}
    for name in stages:
        for key, value in (summary.get("stages", {}).get(name, {}).get("metrics") or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[f"{name}/{key}"] = float(value)
    return out


def _controller_key(trial_id: str) -> str:
    return f"fnsft-tune-controller/{trial_id}"


class StageReportsToTune(TuneReportCallback):
    """Forward a stage's Train reports (one per saved checkpoint) to Tune as ``<stage>/<key>``.

    Only reports that carry the swept metric are forwarded: Tune rejects results without it,
    and they are what ASHA compares trials on while they run. It runs in the Train job's
    controller, and leaves the controller's handle with the handoff store, so that a trial
    stopped early can abort its Train job (see :class:`AbortTrainJobOnStop`).
    """

    def __init__(self, stage: str, metric: str, trial_id: str, store):
        super().__init__()
        self.stage = stage
        self.metric = metric
        self.trial_id = trial_id
        self.store = store
        self._registered = False

    def after_report(self, run_context, metrics, checkpoint):
        import ray

        if not self._registered:  # before the result reaches Tune: a stop can only follow it
            ray.get(self.store.put.remote(_controller_key(self.trial_id),
                                          [ray.get_runtime_context().current_actor]))
            self._registered = True
        flat = {f"{self.stage}/{k}": float(v) for k, v in metrics[0].items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if self.metric in flat:
            self._training_actor_item_queue.put(flat)


class AbortTrainJobOnStop:
    """Mixed into the trial's ``FunctionTrainable``: stopping a trial aborts its Train job.

    Tune stops a trial (ASHA, time budget) by ending its actor. The Train job's controller
    dies with it, but the job's placement group belongs to the driver and would keep its
    CPUs/GPUs for the rest of the sweep; Ray Train's own cleaner needs the dashboard's state
    API, which a local Ray may not run. Aborting the controller first releases them.
    """

    def cleanup(self):
        import ray

        from fnsft.runtime.handoff import current_store

        store = current_store()  # the trial's own store, while its pipeline runs
        try:
            handles = ray.get(store.take.remote(_controller_key(self.trial_id)), timeout=30) if store else None
            if handles:
                ray.get(handles[0].abort.remote(), timeout=120)
        except Exception:  # the job already finished (its controller is gone): nothing to free
            pass
        super().cleanup()


def run_trial(params: dict[str, Any], spec: TrialSpec) -> None:
    """The function trainable: ``params`` maps each swept config path to its sampled value."""
    from fnsft.runtime import placement
    from fnsft.runtime.handoff import new_run_id, run_store
    from fnsft.pipeline import Pipeline
    from fnsft.pipeline.manifest import Manifest
    from fnsft.pipeline.plan import build_plan

    if os.path.isdir(spec.cwd):  # Tune starts trials in a scratch folder of its own
        os.chdir(spec.cwd)
    trial_id = tune.get_context().get_trial_id()
    out = trial_dir(spec.tune_dir, trial_id)
    raw = with_values(spec.raw, params)
    raw["output_dir"] = out
    # Finished stages before the trial stages: the trial's resume manifest points at their
    # saved models, so the pipeline skips them and starts from that model.
    manifest = Manifest(out)
    for name, entry in spec.reused.items():
        manifest.record(name, entry)
    plan = build_plan(data=raw, select=spec.select)
    placement.set_concurrent_runs(spec.concurrent)

    with run_store(new_run_id(f"trial-{trial_id}")) as store:  # the trial's own; its pipeline uses it
        def forward(stage_name: str) -> list:
            if stage_name not in spec.trial_stages:
                return []
            return [StageReportsToTune(stage_name, spec.metric, trial_id, store)]

        summary = Pipeline(plan, train_callbacks=[forward]).run()
    metrics = flatten_metrics(summary, spec.trial_stages)
    if spec.metric not in metrics:
        stage = spec.metric.split("/", 1)[0]
        reported = sorted(k.split("/", 1)[1] for k in metrics if k.startswith(stage + "/"))
        raise StageError(f"tune.metric: stage {stage} reported no '{spec.metric.split('/', 1)[1]}'; "
                         f"it reported: {', '.join(reported) or 'no numeric metrics'}")
    metrics[COMPLETED] = 1.0
    metrics[SECONDS] = float(summary.get("total_seconds", 0.0))
    tune.report(metrics)
