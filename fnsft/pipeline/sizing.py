"""How big a local Ray the plan needs, whether each stage fits on it, and how the plan says so.

Without ``ray.address``/``RAY_ADDRESS`` fnsft starts Ray in-process with this machine's cores
plus the CPUs the heaviest stage's role actors hold (roles and the learner take turns), unless
``ray.num_cpus`` says otherwise. A stage that could never be placed on it fails here, before
Ray starts, with one line (``--dry_run`` says it too); on a cluster the same check runs against
the live cluster when the stage starts (:meth:`fnsft.stages.training.TrainStage.place`).
No ray or torch import here: ``--dry_run`` uses it.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

from fnsft.runtime.placement import local_capacity, local_ray_cpus, machine_cores, problem, torch_threads
from fnsft.errors import ConfigError


def joins_cluster(cfg) -> bool:
    """True when the run joins an existing Ray (``ray.address``, ``RAY_ADDRESS``, or a Ray this
    process already started, e.g. a test session or a Tune trial)."""
    ray = sys.modules.get("ray")
    up = ray is not None and getattr(ray, "is_initialized", lambda: False)()
    return bool(cfg.ray.address or os.environ.get("RAY_ADDRESS") or up)


def _placed(plan) -> list:
    return [s for s in plan.selected if hasattr(s.stage, "demand")]


def role_cpus(plan) -> float:
    """CPUs the role actors of the heaviest selected stage hold."""
    return max((sum(b.get("CPU", 0.0) for b in s.stage.role_bundles()) for s in _placed(plan)), default=0.0)


def local_cpus(plan, concurrent: int = 1, trial_cpus: float = 0.0) -> int:
    """Logical CPUs of the in-process Ray this plan starts."""
    return local_ray_cpus(plan.config.ray.num_cpus, role_cpus(plan), concurrent, trial_cpus)


def check_local_fit(plan) -> None:
    """A local run: every selected stage fits on the local Ray, or a one-line ``ConfigError``."""
    if joins_cluster(plan.config):
        return
    cpus = local_cpus(plan)
    cap = local_capacity(cpus)
    for s in _placed(plan):
        why = problem(s.stage.demand(cap), cap)
        if why:
            cores = machine_cores()
            raise ConfigError(
                f"stage_configs.{s.name}.resources: {why} ({cpus} logical CPUs for {cores} cores"
                f"{', ray.num_cpus' if plan.config.ray.num_cpus else ''}); lower resources.num_workers or "
                "cpus_per_worker, or set ray.num_cpus to run more workers than cores")


def describe_ray(plan) -> str:
    cfg = plan.config
    if cfg.ray.address or os.environ.get("RAY_ADDRESS"):
        return cfg.ray.address or os.environ.get("RAY_ADDRESS")
    cpus, cores = local_cpus(plan), machine_cores()
    why = "ray.num_cpus" if cfg.ray.num_cpus else (
        f"{cores} cores + {role_cpus(plan):g} for the role actors, which take turns with the learner"
        if cpus > cores else f"{cores} cores")
    return f"local (started in-process, {cpus} logical CPUs: {why})"


def describe_resources(plan, planned) -> Optional[str]:
    """The ``resources:`` line of ``--dry_run`` for one stage (None for stages without workers)."""
    if not hasattr(planned.stage, "demand"):
        return None
    res, _ = planned.stage.resources()
    gpu = {None: "auto", True: "yes", False: "no"}[res.use_gpu]
    if plan.config.ray.address or os.environ.get("RAY_ADDRESS"):
        cpus = (f"{res.cpus_per_worker:g} CPU" if res.cpus_per_worker is not None
                else "auto CPU (a node's CPUs split between the workers, chosen on the cluster)")
    else:
        cap = local_capacity(local_cpus(plan))
        n = planned.stage.demand(cap).worker["CPU"]
        cpus = f"{n:g} CPU" + (" (auto: this machine's CPUs split between the workers)"
                                if res.cpus_per_worker is None else "")
        cpus += f", {torch_threads(n)} torch thread(s) each"
    return f"{res.num_workers} worker(s) x {cpus}, GPU: {gpu}, max_failures: {res.max_failures}"
