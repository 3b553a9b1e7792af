"""Connect to Ray, or start it in-process, the way the config and environment ask."""

from __future__ import annotations

import logging
import os
from typing import Optional

log = logging.getLogger("fnsft")
_START_ATTEMPTS = 3
_started_here: Optional[str] = None  # GCS address of the local Ray this process started (see started_here)
# Train's controller polls the workers every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S (Ray: 2 s). A
# finished job waits for the next poll to be noticed, and so does a ray.train.report made while
# the previous one is still queued (the queue holds one): 0.5 s costs the controller a few small
# calls a second. Set for every run (fnsft.runtime.train_job), a local Ray's processes too.
TRAIN_POLL_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}
# Ray Train's public switches for a Ray this process starts (set before ray.init unless already
# set, so Ray's processes inherit them): no preemption watcher (no spot instances on a local
# machine), no metrics callbacks (no dashboard serves them), and the poll interval above.
LOCAL_TRAIN_ENV = {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0", "RAY_TRAIN_METRICS_ENABLED": "0", **TRAIN_POLL_ENV}


def started_here() -> bool:
    """Whether this process started its Ray (a local in-process instance): the cluster ends with
    it, and its CPUs are this machine's (e.g. fnsft.stages.cot_eval sizes its work by them)."""
    import ray

    # Without a GCS address to compare (a Ray that does not expose it), the start itself decides.
    return bool(_started_here) and ray.is_initialized() and _gcs_address() in (_started_here, None)


def _gcs_address() -> Optional[str]:
    import ray

    try:
        return ray.get_runtime_context().gcs_address
    except Exception:  # a Ray without it: compare nothing
        return None


def ensure_ray(cfg, num_cpus: Optional[int] = None, stock_train_jobs: bool = False) -> None:
    """Join ``ray.address`` / ``RAY_ADDRESS`` when given, else start a local Ray (127.0.0.1).

    ``num_cpus``: logical CPUs for a local Ray when ``ray.num_cpus`` is not set (the driver sizes
    it so the plan fits; see :func:`fnsft.runtime.placement.local_ray_cpus`). A local Ray is
    always a new in-process one (``address="local"``): without it ``ray.init`` would join the
    cluster named in Ray's "current cluster" file, which a killed ``ray start`` leaves behind.

    A local Ray gets :data:`LOCAL_TRAIN_ENV` (Ray Train's public switches for what only a cluster
    needs). ``stock_train_jobs`` (Tune trials): Ray Train keeps all its defaults, so the
    variables are not set, and every worker gets the setup hook :func:`quiet_ray_internals`. A
    job-wide runtime environment also keeps Ray from handing the worker processes it starts in
    advance to actors, so the pipeline's own runs go without one.
    """
    import ray

    from fnsft.runtime import placement

    global _started_here
    if ray.is_initialized():
        return
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address == "local":  # Ray's own spelling of "start a new local instance"
        address = None
    # Our own stdout already has the progress; Ray's per-worker log prefixes stay on.
    if address:
        _started_here = None
        log.info("Connecting to Ray at %s", address)
        ray.init(address=address, namespace=cfg.namespace, log_to_driver=True)
        return
    _warn_about_current_cluster_file()
    # Ray starts workers at nice 15, below its own services and any other process: on a shared
    # machine the training threads lose CPU to everything else. A local Ray exists for this
    # pipeline only, so its workers run at the driver's priority (set RAY_worker_niceness to change).
    os.environ.setdefault("RAY_worker_niceness", "0")
    for key, value in ({} if stock_train_jobs else LOCAL_TRAIN_ENV).items():
        os.environ.setdefault(key, value)
    hook = {"worker_process_setup_hook": "fnsft.runtime.ray_start.quiet_ray_internals"}
    cpus = cfg.num_cpus or num_cpus
    log.info("Starting a local Ray instance (%s CPUs%s; dashboard: %s)", cpus or "all",
             f" for {placement.machine_cores()} cores" if cpus and cpus != placement.machine_cores() else "",
             f"http://{cfg.dashboard_host}:8265" if cfg.include_dashboard else "off")
    for attempt in range(1, _START_ATTEMPTS + 1):
        try:
            ray.init(
                address="local", num_cpus=cpus, num_gpus=cfg.num_gpus, namespace=cfg.namespace,
                include_dashboard=cfg.include_dashboard, dashboard_host=cfg.dashboard_host,
                _node_ip_address="127.0.0.1", log_to_driver=True,
                runtime_env=hook if stock_train_jobs else None,
            )
            break
        except Exception as e:
            # Ray gives its raylet a fixed 30 s to register; a busy machine can miss that.
            if "timed out during startup" not in str(e) or attempt == _START_ATTEMPTS:
                raise
            log.warning("Ray's node did not start within Ray's 30 s (a busy machine?); retrying (%d/%d)",
                        attempt + 1, _START_ATTEMPTS)
            ray.shutdown()
    _started_here = _gcs_address() or "local"
    placement.set_local_cores(min(placement.machine_cores(), cfg.num_cpus or placement.machine_cores()))


def _warn_about_current_cluster_file() -> None:
    """One line when an earlier ``ray start`` left its address behind (we do not join it)."""
    try:
        from ray._common.utils import get_ray_address_file

        path = get_ray_address_file(None)
        if os.path.isfile(path):
            with open(path) as f:
                addr = f.read().strip()
            log.warning("Ray's current-cluster file %s names %s (from an earlier `ray start`, maybe no longer "
                        "running); starting a local Ray in-process instead (set ray.address: auto to join it)",
                        path, addr or "nothing")
    except Exception:  # a Ray without this helper: nothing to warn about
        pass


def quiet_ray_internals() -> None:
    """Ray worker setup hook (local Tune sweeps): silence Ray Train's once-a-second State API
    warning.

    Train V2's placement-group cleaner polls the State API, which needs the dashboard; with the
    dashboard off (our local default) or a busy machine every poll logs "Failed to query Ray
    Train Controller actor state", hundreds of lines in a long stage. Nothing else is changed.
    """
    logging.getLogger("ray.train.v2._internal.execution.controller.placement_group_cleaner").setLevel(logging.ERROR)


def cluster_has_gpus() -> bool:
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0
