"""Launch one Ray Train ``TorchTrainer`` job for a stage and collect what rank 0 hands back."""

from __future__ import annotations

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


def run_train_job(job: TrainJob, worker_fn: Callable, resources, storage_path: str) -> dict:
    """Run ``worker_fn`` on ``resources.num_workers`` workers; returns rank 0's hand-back."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    per_worker = {"CPU": resources.cpus_per_worker}
    if job.use_gpu:
        per_worker["GPU"] = resources.gpus_per_worker
    name = f"{job.stage_name}-{time.strftime('%Y%m%d-%H%M%S')}-{job.key[:6]}"
    trainer = TorchTrainer(
        train_loop_per_worker=worker_fn,
        train_loop_config={"job": job},
        scaling_config=ScalingConfig(
            num_workers=resources.num_workers, use_gpu=job.use_gpu,
            resources_per_worker=per_worker, placement_strategy=resources.placement_strategy),
        run_config=RunConfig(
            name=name,
            storage_path=storage_path if "://" in storage_path else os.path.abspath(storage_path),
            failure_config=FailureConfig(max_failures=resources.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            # Workers find the package the driver uses (needed under `ray job submit` too).
            worker_runtime_env={"env_vars": _forwarded_env()},
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
    out.setdefault("timings", {})["train_job_s"] = round(time.time() - started, 2)
    return out


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
