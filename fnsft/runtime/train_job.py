"""Launch one Ray Train ``TorchTrainer`` job for a stage and collect what rank 0 hands back."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from fnsft.errors import StageError
from fnsft.utils.redact import is_secret_name

if TYPE_CHECKING:  # pragma: no cover
    from fnsft.actors.roles import Roles
    from fnsft.data.ingest import StreamPlan
    from fnsft.workers.hf.batching import Batching

log = logging.getLogger("fnsft")


@dataclass
class TrainJob:
    """Everything a training stage's workers need (pickled once into the job's config).

    Built by :meth:`fnsft.stages.training.TrainStage.launch`. Callables are module-level
    functions, so they pickle by reference and the workers import them.
    """

    stage_name: str
    stage_config: Any
    model: Any  # ModelHandle of the incoming model
    data: dict[str, Any]  # split name -> ObjectRef of a list of rows
    worker_fn: Callable[[dict], None]  # Ray Train's train_loop_per_worker: the worker's body
    deepspeed: Optional[dict]  # the HF/DeepSpeed dict; None: plain torch (DDP)
    use_gpu: bool
    torch_dtype: str
    # HF/TRL stages: (job, model, tokenizer, train_dataset, eval_dataset, args, peft_config) -> Trainer,
    # one of fnsft.workers.hf.trainers; None for workers that build their own (RL, reward model).
    trainer_factory: Optional[Callable[..., Any]] = None
    batching: Optional["Batching"] = None  # how an HF/TRL stage batches (chosen by the stage)
    roles: Optional["Roles"] = None  # RL: the role actors rank 0 drives
    save_dir: Optional[str] = None  # reward model: where the trained model is saved
    tty: bool = False  # the driver's console is a terminal: a live progress bar instead of lines
    store: Any = None  # HandoffStore actor
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    # Ray Train run name; a stable one (run_name_for) lets a rerun after a driver crash find the
    # run's checkpoints: Train restores its snapshot and ray.train.get_checkpoint() returns the
    # newest complete checkpoint. Empty: a fresh name (no resume across driver runs).
    run_name: str = ""
    # A streamed stage (YAML data_streaming): its shards' columns, rows and steps; the rows come
    # from Ray Train's dataset shards (run_train_job's ``datasets``), not from ``data``.
    stream: Optional["StreamPlan"] = None


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


def run_train_job(job: TrainJob, resources, storage_path: str, callbacks: Sequence = (),
                  datasets: Optional[dict[str, Any]] = None) -> dict:
    """Run ``job.worker_fn`` on ``resources.num_workers`` workers; returns rank 0's hand-back.

    ``resources.cpus_per_worker`` must be resolved (a number): each worker holds that many CPUs
    and runs that many torch threads (Ray's default for a 1-CPU actor would be one).
    ``callbacks``: extra ``ray.train.UserCallback`` of the job (a Tune trial's report forwarding).
    ``datasets``: name -> ``ray.data.Dataset``, each split between the workers by Ray Train
    (``DataConfig``; a worker reads its part with ``ray.train.get_dataset_shard(name)``).
    """
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from fnsft.runtime.placement import torch_threads
    from fnsft.runtime.ray_start import TRAIN_POLL_ENV
    from fnsft.runtime.repeated_failures import repeated_failure_callbacks
    from fnsft.workers.startup_marks import phase_seconds

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
    for key, value in TRAIN_POLL_ENV.items():  # Train's poll interval (see ray_start), read by Ray Train here
        os.environ.setdefault(key, value)
    streamed = dict(datasets=datasets, dataset_config=DataConfig(datasets_to_split=list(datasets))) if datasets else {}
    trainer = TorchTrainer(
        train_loop_per_worker=_with_threads(job.worker_fn, threads),
        train_loop_config={"job": job}, **streamed,
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
            callbacks=list(callbacks) + repeated_failure_callbacks(job),
        ),
    )
    started = time.time()
    try:
        trainer.fit()
    except Exception as e:
        from fnsft.workers.finite_guard import recorded_failure

        failed = recorded_failure(job.store, job.key, keep=False)  # e.g. a NaN loss: its own one line
        raise StageError(failed or f"stage {job.stage_name}: Ray Train job failed: {_root_cause(e)}") from e
    import ray

    out = ray.get(job.store.take.remote(job.key))
    if out is None:
        raise StageError(f"stage {job.stage_name}: the Train job ended without handing back a model")
    timings = out.setdefault("timings", {})
    timings["train_job_s"] = round(time.time() - started, 2)
    # Where the job's start-up went (rank 0's marks; fnsft.workers.startup_marks).
    timings.update(phase_seconds(started, out.pop("marks", None) or []))
    return out


def _with_threads(worker_fn: Callable, threads: int) -> Callable:
    """``worker_fn`` run with ``threads`` torch threads (at most the worker machine's cores)."""

    def train_loop(config):
        from fnsft.workers.startup_marks import Marks
        from fnsft.utils.imports import needed_integrations, skip_unused_integrations

        marks = Marks()
        marks("worker_group_start")  # Ray Train's controller, workers and process group are up
        # Before anything imports transformers: no wandb/mlflow/bitsandbytes unless the stage uses them.
        skip_unused_integrations(needed_integrations(config["job"].stage_config))
        import torch

        from fnsft.runtime.placement import machine_cores

        torch.set_num_threads(max(1, min(threads, machine_cores())))
        return worker_fn({**config, "_marks": marks})

    train_loop.__name__ = getattr(worker_fn, "__name__", "train_loop")
    return train_loop


def _forwarded_env() -> dict[str, str]:
    keys = ("FNSFT_CACHE", "HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE",
            "TORCH_EXTENSIONS_DIR", "PYTHONPATH")
    env = {k: os.environ[k] for k in keys if k in os.environ}
    # Experiment trackers read their settings (and the run to attach to) from the environment.
    # Never their credentials (WANDB_API_KEY, MLFLOW_TRACKING_TOKEN...): a runtime environment is
    # readable by anyone who can list the cluster's actors (`ray list actors --detail`); workers
    # take those from their node's environment (a local Ray's processes inherit the driver's).
    env.update({k: v for k, v in os.environ.items()
                if k.startswith(("MLFLOW_", "WANDB_", "HF_MLFLOW_")) and not is_secret_name(k)})
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def _root_cause(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    tail = [m for m in msg if m.strip()][-1:] if msg else []
    return f"{type(e).__name__}: {tail[0] if tail else ''}"
