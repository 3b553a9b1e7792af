"""Bounded disk: what a finished stage leaves behind, and how many bytes that is.

While a stage runs, its trainer keeps ``save_total_limit`` checkpoints and Ray Train keeps
``num_to_keep`` (a restarted worker group, or a rerun after a driver crash, resumes from them).
Once the stage has succeeded and its model is handed on, those checkpoints are dead weight
(optimizer state is 2-3x the model), so :func:`remove_stage_checkpoints` deletes them and the
summary records the bytes the stage still holds (``disk_bytes``).
"""

from __future__ import annotations

import logging
import os
import shutil

log = logging.getLogger("fnsft")

# Folders inside a stage's output_dir that only matter while the stage runs.
STAGE_SCRATCH = (".scratch", ".rl_checkpoints")


def dir_bytes(path: str) -> int:
    """Bytes of the regular files under ``path`` (0 when it does not exist)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(root, f))
            except OSError:  # removed while we walk
                continue
            total += st.st_size
    return total if os.path.exists(path) else 0


def ray_runs(storage: str, stage_name: str) -> set[str]:
    """Ray Train run folders of ``stage_name`` (named ``<stage>-...``) in a local storage path."""
    if not storage or "://" in storage or not os.path.isdir(storage):
        return set()
    return {os.path.join(storage, d) for d in os.listdir(storage)
            if d.startswith(stage_name + "-") and os.path.isdir(os.path.join(storage, d))}


def remove_stage_checkpoints(stage_dir: str, storage: str, stage_name: str, runs: set[str]) -> int:
    """Delete a succeeded stage's trainer and Ray Train checkpoints; returns the bytes freed.

    ``runs`` are the Ray Train run folders to remove (the caller decides which belong to this
    run: every ``<stage>-*`` run under the run's own ``<output_dir>/ray_train``, or only those
    created during the stage in a shared ``ray.storage_path``).
    """
    doomed = [os.path.join(stage_dir, d) for d in STAGE_SCRATCH]
    trainer = os.path.join(stage_dir, "trainer")
    if os.path.isdir(trainer):
        doomed += [os.path.join(trainer, d) for d in os.listdir(trainer) if d.startswith("checkpoint-")]
    doomed += sorted(runs)
    freed = 0
    for path in doomed:
        if os.path.isdir(path):
            freed += dir_bytes(path)
            shutil.rmtree(path, ignore_errors=True)
    if os.path.isdir(trainer) and not os.listdir(trainer):
        os.rmdir(trainer)
    if storage and os.path.isdir(storage) and not os.listdir(storage):
        os.rmdir(storage)
    if freed:
        log.info("Stage %s: removed its checkpoints (%s freed)", stage_name, human_bytes(freed))
    return freed


def human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
