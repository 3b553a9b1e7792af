"""What rank 0 of every training stage does at the end: keep a LoRA stage's adapter, save the
stage's model (``save_intermediate``) and hand its weights to the driver through the run's
HandoffStore; and where each worker records its pid and node (tests kill workers by pid, the
summary shows where each rank ran)."""

from __future__ import annotations

import glob
import os
import shutil


def keep_stage_adapter(job, trained_dir: str, tokenizer) -> str:
    """A LoRA stage's adapter, kept in ``<stage>/adapter/`` (rebuilds the merged copy on a resume)."""
    from fnsft.models.adapters import ADAPTER_DIR, keep_adapter

    base = job.model.path or job.model.source
    return keep_adapter(trained_dir, os.path.join(job.stage_config.output_dir, ADAPTER_DIR), tokenizer, base)


def save_and_hand_back(job, model, tokenizer, metrics: dict, artifacts: dict, adapter: str | None = None,
                       marks=()) -> None:
    """Rank 0 of any training stage: write the stage's model (``save_intermediate``) and hand its
    weights to the driver through the HandoffStore (which re-puts them so it owns the copy);
    ``adapter``: the folder :func:`keep_stage_adapter` wrote (LoRA); ``marks``: rank 0's start-up
    marks (:mod:`fnsft.workers.startup_marks`)."""
    import ray

    from fnsft.models.weights import state_dict_to_numpy

    c = job.stage_config
    path = None
    if c.save_intermediate:
        path = os.path.join(c.output_dir, "model")
        shutil.rmtree(path, ignore_errors=True)
        model.save_pretrained(path, safe_serialization=True)
        tokenizer.save_pretrained(path)
    ray.get(job.store.adopt.remote(job.key, state_dict_to_numpy(model.state_dict()), {
        "path": path, "adapter_path": adapter, "metrics": metrics, "artifacts": artifacts, "marks": list(marks)}))


def mark_worker(output_dir: str, rank: int) -> None:
    """Record this worker's pid and node in the stage folder (tests kill workers by pid)."""
    import ray

    with open(os.path.join(output_dir, f".worker{rank}.pid"), "w") as f:
        f.write(str(os.getpid()))
    with open(os.path.join(output_dir, f".worker{rank}.node"), "w") as f:  # where it ran
        f.write(ray.get_runtime_context().get_node_id())


def find_pids(output_dir: str) -> dict[int, int]:
    """rank -> pid of a running stage's workers (tests use it to kill one)."""
    out = {}
    for p in glob.glob(os.path.join(output_dir, ".worker*.pid")):
        rank = int(os.path.basename(p)[len(".worker"):-len(".pid")])
        out[rank] = int(open(p).read().strip())
    return out
