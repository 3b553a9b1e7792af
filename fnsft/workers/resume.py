"""Where a Train worker continues from: the newest complete checkpoint of its run, read in place.

Ray Train hands a worker the newest checkpoint it registered (every rank reported it) when
(a) the worker group restarts after a worker died (``resources.max_failures``) or (b) a new
driver runs a Train run of the same name — stage run names follow the stage's fingerprint
(:meth:`fnsft.stages.training.TrainStage.launch`), so rerunning the command after a driver
crash lands here too. At most one ``save_steps`` interval of work is lost.

Every rank reads the checkpoint where it is: a local (or shared) storage path is used as is,
and a remote one (``s3://``) is downloaded once per node by Ray (the other local ranks wait for
that download, then read the same folder), after :mod:`fnsft.workers.safe_checkpoint` found no
pickled code in it. No rank deletes or copies into a folder another
rank reads, so a restore cannot race.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Iterator, Optional


@contextlib.contextmanager
def restored_checkpoint() -> Iterator[Optional[str]]:
    """Every rank: ``with restored_checkpoint() as d:`` — the checkpoint folder to resume from
    (read-only, valid inside the block), or None on a fresh start."""
    import ray.train

    from fnsft.workers.safe_checkpoint import check_checkpoint_pickles

    ckpt = ray.train.get_checkpoint()
    if ckpt is None:
        yield None
        return
    with ckpt.as_directory() as d:
        check_checkpoint_pickles(d)  # DeepSpeed unpickles its files: nothing but its own types
        yield d


def hf_checkpoint_step(path: str) -> int:
    """The optimizer step an HF Trainer checkpoint folder was saved at."""
    with open(os.path.join(path, "trainer_state.json")) as f:
        return int(json.load(f)["global_step"])


class FinishedAtCheckpoint(Exception):
    """The restored checkpoint is the run's last step: nothing is left to train."""


def stop_if_finished():
    """A TrainerCallback for a resumed run: at ``on_train_begin`` (weights, optimizer and step
    already restored), raise :class:`FinishedAtCheckpoint` when the checkpoint is at ``max_steps``.

    HF's loop would otherwise train one more step before it checks the step count (a checkpoint
    at step 24 of 24 resumes to ``step 25/24``): a driver killed after the last checkpoint and
    before the hand-off would hand on a model one step past the one it checkpointed.
    """
    from transformers import TrainerCallback

    class StopIfFinished(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            if state.max_steps > 0 and state.global_step >= state.max_steps:
                raise FinishedAtCheckpoint(f"checkpoint at step {state.global_step} of {state.max_steps}")

    return StopIfFinished()


def finished_run_metrics(trainer) -> dict:
    """The train metrics of a run that :class:`FinishedAtCheckpoint` stopped: the checkpoint's
    step, the mean of its logged losses as ``train_loss`` (what HF reports after a full run,
    over the logged steps), and ``resumed_finished`` = 1 (no step ran in this process)."""
    trainer.is_in_train = False  # train() left before its own clean-up
    losses = [e["loss"] for e in trainer.state.log_history if isinstance(e.get("loss"), (int, float))]
    out = {"global_step": trainer.state.global_step, "resumed_finished": 1}
    if losses:
        out["train_loss"] = sum(losses) / len(losses)
    return out
