"""Launch one Ray Train ``TorchTrainer`` job for a stage and collect what rank 0 hands back."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from fnsft.errors import StageError

log = logging.getLogger("fnsft")

# Extra Ray Train callbacks for every job started in this process: each entry takes the stage
# name and returns a list of ``ray.train.UserCallback``. A Tune trial (fnsft.tune) adds one that
# forwards the job's reports to Tune.
run_callbacks: list[Callable[[str], list]] = []


@dataclass
class TrainJob:
    """Everything a training stage's workers need (pickled once into the job's config)."""

    stage_name: str
    stage_config: Any
    model: Any  # ModelHandle of the incoming model
    data: dict[str, Any]  # split name -> ObjectRef of a list of rows
    builder: str  # "module:function" building the TRL trainer
    deepspeed: Optional[dict]
    use_gpu: bool
    torch_dtype: str
    store: Any = None  # HandoffStore actor
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    extra: dict[str, Any] = field(default_factory=dict)
    # Ray Train run name; a stable one (run_name_for) lets a rerun after a driver crash find the
    # run's checkpoints: Train restores its snapshot and ray.train.get_checkpoint() returns the
    # newest complete checkpoint. Empty: a fresh name (no resume across driver runs).
    run_name: str = ""


def run_name_for(stage_name: str, fingerprint: str, *identity: Any) -> str:
    """``<stage>-<12 hex>``: the same stage fingerprint, output folder and worker layout give the
    same name (so a rerun resumes); anything else a new one (a fresh start)."""
    blob = json.dumps([fingerprint, *identity], sort_keys=True, default=str).encode()
    return f"{stage_name}-{hashlib.sha256(blob).hexdigest()[:12]}"


def latest_checkpoint(storage_path: str, run_name: str) -> Optional[str]:
    """The newest checkpoint Ray Train registered for ``run_name`` (None: a fresh run)."""
    path = os.path.join(storage_path, run_name, "checkpoint_manager_snapshot.json")
    try:
        with open(path) as f:
            names = [c["checkpoint_dir_name"] for c in json.load(f)["checkpoint_results"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return sorted(names)[-1] if names else None


def run_train_job(job: TrainJob, worker_fn: Callable, resources, storage_path: str) -> dict:
    """Run ``worker_fn`` on ``resources.num_workers`` workers; returns rank 0's hand-back.

    ``resources.cpus_per_worker`` must be resolved (a number): each worker holds that many CPUs
    and runs that many torch threads (Ray's default for a 1-CPU actor would be one).
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig

    from fnsft.distributed.placement import torch_threads
    from fnsft.distributed.ray_runtime import started_here
    from fnsft.distributed.startup_marks import phase_seconds
    from fnsft.distributed.train_runtime import trainer_class

    per_worker = {"CPU": resources.cpus_per_worker}
    if job.use_gpu:
        per_worker["GPU"] = resources.gpus_per_worker
    name = job.run_name or f"{job.stage_name}-{time.strftime('%Y%m%d-%H%M%S')}-{job.key[:6]}"
    storage_path = storage_path if "://" in storage_path else os.path.abspath(storage_path)
    if job.run_name and "://" not in storage_path:
        resumed = latest_checkpoint(storage_path, name)
        if resumed:
            log.info("[%s] an earlier run of this stage left checkpoints in %s: resuming from %s",
                     job.stage_name, os.path.join(storage_path, name), resumed)
    threads = torch_threads(resources.cpus_per_worker)
    # Train's controller polls the workers every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S (Ray: 2 s). A
    # finished job waits for the next poll to be noticed, and so does a ray.train.report made
    # while the previous one is still queued (the queue holds one): 0.5 s costs the controller
    # a few small calls a second.
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    trainer = trainer_class(local=started_here())(  # a local Ray: without Train's cluster-only helpers
        train_loop_per_worker=_with_threads(worker_fn, threads),
        train_loop_config={"job": job},
        scaling_config=ScalingConfig(
            num_workers=resources.num_workers, use_gpu=job.use_gpu,
            resources_per_worker=per_worker, placement_strategy=resources.placement_strategy),
        run_config=RunConfig(
            name=name,
            storage_path=storage_path,
            failure_config=FailureConfig(max_failures=resources.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            # Workers find the package the driver uses (needed under `ray job submit` too).
            worker_runtime_env={"env_vars": {**_forwarded_env(), "OMP_NUM_THREADS": str(threads)}},
            callbacks=[cb for make in run_callbacks for cb in make(job.stage_name)],
        ),
    )
    started = time.time()
    try:
        trainer.fit()
    except Exception as e:
        from fnsft.distributed.finite_guard import recorded_failure

        failed = recorded_failure(job.store, job.key, keep=False)  # e.g. a NaN loss: its own one line
        raise StageError(failed or f"stage {job.stage_name}: Ray Train job failed: {_root_cause(e)}") from e
    import ray

    out = ray.get(job.store.take.remote(job.key))
    if out is None:
        raise StageError(f"stage {job.stage_name}: the Train job ended without handing back a model")
    timings = out.setdefault("timings", {})
    timings["train_job_s"] = round(time.time() - started, 2)
    # Where the job's start-up went (rank 0's marks; fnsft.distributed.startup_marks).
    timings.update(phase_seconds(started, out.pop("marks", None) or []))
    return out


def _with_threads(worker_fn: Callable, threads: int) -> Callable:
    """``worker_fn`` run with ``threads`` torch threads (at most the worker machine's cores)."""

    def train_loop(config):
        from fnsft.distributed.startup_marks import Marks
        from fnsft.utils.imports import needed_integrations, skip_unused_integrations

        marks = Marks()
        marks("worker_group_start")  # Ray Train's controller, workers and process group are up
        # Before anything imports transformers: no wandb/mlflow/bitsandbytes unless the stage uses them.
        skip_unused_integrations(needed_integrations(config["job"].stage_config))
        import torch

        from fnsft.distributed.placement import machine_cores

        torch.set_num_threads(max(1, min(threads, machine_cores())))
        return worker_fn({**config, "_marks": marks})

    train_loop.__name__ = getattr(worker_fn, "__name__", "train_loop")
    return train_loop


def _forwarded_env() -> dict[str, str]:
    keys = ("FNSFT_CACHE", "HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE",
            "TORCH_EXTENSIONS_DIR", "PYTHONPATH")
    env = {k: os.environ[k] for k in keys if k in os.environ}
    # Experiment trackers read their settings (and the run to attach to) from the environment.
    env.update({k: v for k, v in os.environ.items() if k.startswith(("MLFLOW_", "WANDB_", "HF_MLFLOW_"))})
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def _root_cause(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    tail = [m for m in msg if m.strip()][-1:] if msg else []
    return f"{type(e).__name__}: {tail[0] if tail else ''}"
