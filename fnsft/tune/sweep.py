"""``fnsft-pipeline --config x.yaml --tune``: a Ray Tune sweep over the pipeline's own config.

```
validate_sweep(plan)          the tune: section, every swept path and value, the stage split   (no Ray)
run_sweep(plan, ...)
  shared stages               run once in <output_dir> (skipped when already finished there)
  Tuner(run_trial) x N        trial <id>: <output_dir>/tune/trial_<id>, a pipeline run of the
                              trial stages, starting from the shared stages' saved model
  results                     <output_dir>/tune/results.csv, a console table,
                              <output_dir>/tune/best_config.yaml (runs as is with fnsft-pipeline)
```

Each trial folder holds both Tune's files (``params.json``, ``result.json``, ``error.txt``)
and the trial's pipeline outputs (``0N_<stage>/``, ``pipeline_summary.json``,
``pipeline_training.log``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Optional

from fnsft.errors import StageError
from fnsft.tune.results import (
    TrialRow, best_row, format_table, rows_from_results, write_best_config, write_csv,
)
from fnsft.tune.space import Sweep, base_config, check_candidates, parse_sweep

log = logging.getLogger("fnsft")
TUNE_DIR = "tune"


@dataclass
class SweepOutcome:
    rows: list[TrialRow]  # best first
    best: TrialRow
    tune_dir: str
    results_csv: str
    best_config: str


def validate_sweep(plan) -> Sweep:
    """Check ``tune:`` before anything starts; raises a one-line ``ConfigError``."""
    sweep = parse_sweep(plan)
    check_candidates(plan, sweep)
    return sweep


def run_sweep(plan, config_path: Optional[str] = None, overrides: Optional[list[str]] = None) -> SweepOutcome:
    """Run the sweep of a plan built with ``--tune`` (validated again here).

    ``plan.raw`` already holds the ``--set`` overrides and ``plan.config_path`` the file, so
    ``config_path``/``overrides`` (what the CLI passes) are not needed beyond it.
    """
    from ray import tune

    from fnsft.runtime.ray_start import ensure_ray
    from fnsft.pipeline.sizing import local_cpus
    from fnsft.pipeline.logs import setup_logging
    from fnsft.tune.trial import AbortTrainJobOnStop, TrialSpec, run_trial

    sweep = validate_sweep(plan)
    cfg, c = plan.config, sweep.config
    tune_dir = os.path.join(cfg.output_dir, TUNE_DIR)
    os.makedirs(tune_dir, exist_ok=True)
    setup_logging(cfg.log_level, tune_dir)
    log.info("%s", sweep.describe())

    # A local Ray holds max_concurrent_trials trials, their role actors and this machine's cores
    # (which the trials' Train workers split). Each trial has its own hand-off store.
    ensure_ray(cfg.ray, num_cpus=local_cpus(plan, c.max_concurrent_trials, c.cpus_per_trial),
               stock_train_jobs=True)

    raw = base_config(plan)
    for name in sweep.shared_stages:  # trials start from these stages' saved models
        raw.setdefault("stage_configs", {}).setdefault(name, {})["save_intermediate"] = True
    reused = _run_shared_stages(plan, sweep, raw)
    setup_logging(cfg.log_level, tune_dir)  # the shared run pointed the log at output_dir

    _check_trials_fit(plan, sweep)
    spec = TrialSpec(raw=raw, tune_dir=tune_dir, cwd=os.getcwd(),
                     select=sweep.shared_stages + sweep.trial_stages, trial_stages=sweep.trial_stages,
                     metric=c.metric, reused=reused, concurrent=c.max_concurrent_trials)
    trainable = tune.with_parameters(run_trial, spec=spec)
    trainable.__mixins__ = (AbortTrainJobOnStop,)  # Tune's hook to extend a function trainable
    trainable = tune.with_resources(trainable, {"CPU": c.cpus_per_trial})
    tuner = tune.Tuner(
        trainable,
        param_space={p.path: p.to_tune() for p in sweep.params},
        tune_config=tune.TuneConfig(
            metric=c.metric, mode=c.mode, num_samples=c.num_samples,
            scheduler=_scheduler(sweep), search_alg=_searcher(sweep), time_budget_s=c.time_budget_s,
            trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
        run_config=tune.RunConfig(name=TUNE_DIR, storage_path=cfg.output_dir),
    )
    log.info("Starting %d trial(s); each writes to %s", sweep.num_trials, os.path.join(tune_dir, "trial_<id>"))
    grid = tuner.fit()

    rows = rows_from_results(grid, sweep)
    results_csv = write_csv(rows, sweep, os.path.join(tune_dir, "results.csv"))
    table = format_table(rows, sweep)
    print(table, flush=True)
    best = best_row(rows, c.metric)
    if best is None:
        failed = [r for r in rows if r.status == "error"]
        first = f"; first error: {failed[0].error}" if failed else ""
        raise StageError(f"tune: no trial finished ({len(failed)} of {len(rows)} failed){first}; "
                         f"see {results_csv}")
    best_config = write_best_config(plan, sweep, best, os.path.join(tune_dir, "best_config.yaml"))
    print(f"Best trial {best.trial_id}: {c.metric} = {best.metrics[c.metric]:.6g}\n"
          f"  results:     {results_csv}\n"
          f"  best config: {best_config}\n"
          f"  run it:      fnsft-pipeline --config {best_config}", flush=True)
    log.info("Sweep finished; best trial %s (%s = %.6g); results %s, best config %s",
             best.trial_id, c.metric, best.metrics[c.metric], results_csv, best_config)
    return SweepOutcome(rows=rows, best=best, tune_dir=tune_dir, results_csv=results_csv,
                        best_config=best_config)


def _run_shared_stages(plan, sweep: Sweep, raw: dict) -> dict[str, dict]:
    """Run the shared stages once in ``output_dir``; the manifest entries trials start from.

    A stage that already finished there with the same settings (e.g. an SFT run before a DPO
    sweep) is not run again. Finished stages that the run did not select (``--stages``) are
    handed to the trials too, as a normal run would use them.
    """
    from fnsft.pipeline import Pipeline
    from fnsft.pipeline.manifest import Manifest
    from fnsft.pipeline.plan import build_plan

    out = plan.config.output_dir
    if sweep.shared_stages:
        log.info("Shared stages %s: run once in %s (trials start from their saved model)",
                 ", ".join(sweep.shared_stages), out)
        shared = dict(raw, save_final_model=False, cleanup_intermediate=False)
        Pipeline(build_plan(data=shared, select=sweep.shared_stages)).run()
    manifest = Manifest(out)
    before = [s.name for s in plan.stages][: [s.name for s in plan.stages].index(sweep.trial_stages[0])]
    reused = {}
    for name in before:
        entry = manifest.data["stages"].get(name)
        # An earlier LoRA stage may keep only its adapter (its merged copy rebuilds from it).
        if entry and entry.get("status") == "completed" and (
                entry.get("model_path") or entry.get("adapter_path") or entry.get("passthrough")):
            reused[name] = entry
    missing = [s for s in sweep.shared_stages if s not in reused]
    if missing:
        raise StageError(f"tune: shared stage(s) {', '.join(missing)} left no saved model in {out}")
    return reused


def _check_trials_fit(plan, sweep: Sweep) -> None:
    """One trial (its own CPU plus its stage's workers and role actors) fits on the cluster, or a
    one-line error now: Tune would otherwise keep the trial pending, silently, for ever."""
    from fnsft.runtime import placement

    c = sweep.config
    cap = placement.cluster_capacity()
    placement.set_concurrent_runs(c.max_concurrent_trials)  # the auto CPU share the trials will use
    try:
        for planned in plan.stages:
            if planned.name not in sweep.trial_stages or not hasattr(planned.stage, "demand"):
                continue
            demand = planned.stage.demand(cap)
            demand.roles = demand.roles + [{"CPU": c.cpus_per_trial}]
            demand.what = f"a trial of stage {planned.name} (tune.cpus_per_trial included)"
            why = placement.problem(demand, cap)
            if why:
                raise StageError(f"tune: {why}; lower the stage's resources or tune.cpus_per_trial, "
                                 "or give Ray more (ray.num_cpus, a larger cluster)")
    finally:
        placement.set_concurrent_runs(1)


def _scheduler(sweep: Sweep):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    s = sweep.config.scheduler
    if s.type == "asha":
        return ASHAScheduler(time_attr=s.time_attr, max_t=s.max_t, grace_period=s.grace_period,
                             reduction_factor=s.reduction_factor)
    return FIFOScheduler()


def _searcher(sweep: Sweep):
    """Random/grid search. It limits concurrency itself: Tune ignores ``max_concurrent_trials``
    once a ``BasicVariantGenerator`` is given."""
    from ray.tune.search import BasicVariantGenerator

    c = sweep.config
    return BasicVariantGenerator(random_state=c.seed, max_concurrent=c.max_concurrent_trials)


def _trial_name(trial) -> str:
    return f"trial_{trial.trial_id}"
