"""Bounded disk: what a finished stage leaves behind, and how many bytes that is.

While a stage runs, its trainer keeps ``save_total_limit`` checkpoints and Ray Train keeps
``num_to_keep`` (a restarted worker group, or a rerun after a driver crash, resumes from them).
Once the stage has succeeded and its model is handed on, those checkpoints are dead weight
(optimizer state is 2-3x the model), so :func:`remove_stage_checkpoints` deletes them and the
summary records the bytes the stage still holds (``disk_bytes``).

Every delete of the pipeline goes through :func:`remove_inside`: nothing outside the run's own
folders is ever removed (a run folder copied elsewhere still names the original's models in its
summary; a shared ``ray.storage_path`` holds other runs' checkpoints), and a symlink is unlinked,
never followed.
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


def is_inside(path: str, root: str) -> bool:
    """Whether ``path`` (its folder's symlinks resolved, not its own) lies strictly inside ``root``."""
    path = os.path.abspath(path)
    where = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
    root = os.path.realpath(root)
    return where != root and os.path.commonpath([where, root]) == root


def remove_inside(path: str, root: str) -> int:
    """Delete the file, folder or symlink ``path`` if it lies inside ``root``; the bytes freed.

    Anything else is refused with a log line (0 bytes). A symlink is unlinked, its target kept;
    a folder's own symlinks likewise (``shutil.rmtree`` never follows them).
    """
    if not os.path.lexists(path):
        return 0
    if not is_inside(path, root):
        log.warning("Kept %s: it is not inside this run's folder %s", path, root)
        return 0
    if os.path.islink(path) or not os.path.isdir(path):
        size = os.lstat(path).st_size
        os.unlink(path)
        return size
    freed = dir_bytes(path)
    shutil.rmtree(path, ignore_errors=True)
    return freed


def ray_runs(storage: str, stage_name: str) -> set[str]:
    """Ray Train run folders of ``stage_name`` (named ``<stage>-...``) in a local storage path."""
    if not storage or "://" in storage or not os.path.isdir(storage):
        return set()
    return {os.path.join(storage, d) for d in os.listdir(storage)
            if d.startswith(stage_name + "-") and os.path.isdir(os.path.join(storage, d))}


def own_train_runs(storage: str, stage, fingerprint: str, shared: bool) -> set[str]:
    """This run's Ray Train run folders of ``stage`` in a local ``storage`` path.

    In the run's own ``<output_dir>/ray_train`` (``shared`` False) every ``<stage>-*`` folder is
    this run's (the output folder's lock keeps other pipelines out). In a shared
    ``ray.storage_path``, other runs' folders sit beside them, live: only the names this stage's
    Train jobs use are its own, ``run_name_for(stage, fingerprint, output folder, worker
    layout)`` as :meth:`fnsft.stages.training.TrainStage.run_job` names them.
    """
    if not shared:
        return ray_runs(storage, stage.stage_name)
    from fnsft.stages.training import TrainStage

    if not isinstance(stage, TrainStage) or not storage or "://" in storage:
        return set()
    from fnsft.runtime.deepspeed_config import build_deepspeed_config
    from fnsft.runtime.ray_start import cluster_has_gpus
    from fnsft.runtime.train_job import run_name_for

    res, ds = stage.resources()
    use_gpu = res.use_gpu if res.use_gpu is not None else cluster_has_gpus()
    out = os.path.abspath(stage.config.output_dir)
    # RL with TRPO trains without DeepSpeed whatever the stage's deepspeed: settings say.
    names = {run_name_for(stage.stage_name, fingerprint, out, res.num_workers, use_gpu, d)
             for d in (build_deepspeed_config(ds, use_gpu, res.num_workers), None)}
    return {os.path.join(storage, n) for n in names if os.path.isdir(os.path.join(storage, n))}


def remove_stage_checkpoints(stage_dir: str, storage: str, stage_name: str, runs: set[str]) -> int:
    """Delete a succeeded stage's trainer and Ray Train checkpoints; returns the bytes freed.

    ``runs`` are this run's Ray Train run folders to remove (see :func:`own_train_runs`); each
    must lie inside ``storage``, and the stage's scratch inside ``stage_dir``.
    """
    trainer = os.path.join(stage_dir, "trainer")
    doomed = [os.path.join(stage_dir, d) for d in STAGE_SCRATCH]
    if os.path.isdir(trainer) and not os.path.islink(trainer):
        doomed += [os.path.join(trainer, d) for d in os.listdir(trainer) if d.startswith("checkpoint-")]
    freed = sum(remove_inside(path, stage_dir) for path in doomed)
    freed += sum(remove_inside(path, storage) for path in sorted(runs))
    if os.path.isdir(trainer) and not os.path.islink(trainer) and not os.listdir(trainer):
        os.rmdir(trainer)
    if freed:
        log.info("Stage %s: removed its checkpoints (%s freed)", stage_name, human_bytes(freed))
    return freed


def human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
