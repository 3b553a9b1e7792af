"""Stop a stage the moment its loss turns NaN/inf, and never hand a broken model on.

A NaN loss poisons the weights at the next optimizer step; training on would only burn time
and hand the next stage a broken model (in float16 an overflow does exactly that). The guard:

- checks every micro-batch's training loss (HF's ``logging_nan_inf_filter`` would otherwise
  hide it from the logs) and every evaluation's ``eval_loss``;
- on the first non-finite value raises :class:`NonFiniteLoss` with one line naming the stage,
  the step and the likely cause, and records that line in the driver's HandoffStore, so the
  driver raises it as the stage's :class:`~fnsft.errors.StageError` and a restarted worker
  group (``max_failures``) fails at once instead of retraining into the same NaN.
"""

from __future__ import annotations

import math

from fnsft.errors import StageError
from fnsft.models.precision import nonfinite_message


class NonFiniteLoss(StageError):
    """A training or eval loss became NaN/inf."""


def error_key(job_key: str) -> str:
    return f"{job_key}:error"


def record_failure(job, message: str) -> None:
    """Leave ``message`` in the HandoffStore for the driver (and for restarted workers)."""
    record_failure_line(job.store, job.key, message)


def record_failure_line(store, job_key: str, message: str) -> None:
    """:func:`record_failure` given the store and the job's key (Ray Train's controller has no job)."""
    import ray

    if store is not None:
        ray.get(store.put.remote(error_key(job_key), message))


def recorded_failure(store, job_key: str, keep: bool = True):
    """The failure a worker recorded for this job, or ``None`` (``keep``: leave it in the store)."""
    import ray

    if store is None:
        return None
    msg = ray.get(store.take.remote(error_key(job_key)))
    if msg is not None and keep:
        ray.get(store.put.remote(error_key(job_key), msg))
    return msg


def check_value(stage: str, what: str, value, step: int, precision, learning_rate) -> None:
    """Raise :class:`NonFiniteLoss` when ``value`` (a float or 0-dim tensor) is NaN/inf."""
    v = float(value)
    if not math.isfinite(v):
        raise NonFiniteLoss(nonfinite_message(stage, what, step, v, precision, learning_rate))


def guard_trainer(trainer, stage: str, precision) -> None:
    """Make an HF/TRL ``trainer`` stop at the first NaN/inf training or eval loss."""
    from transformers import TrainerCallback

    lr = trainer.args.learning_rate
    step_fn = trainer.training_step

    def training_step(*args, **kwargs):
        loss = step_fn(*args, **kwargs)
        # One host sync per micro-batch, as HF's own NaN filter does by default.
        check_value(stage, "the training loss", loss, trainer.state.global_step + 1, precision, lr)
        return loss

    trainer.training_step = training_step

    class EvalGuard(TrainerCallback):
        def on_evaluate(self, args, state, control, metrics=None, **kw):
            for key, value in (metrics or {}).items():
                if key.endswith("_loss") and isinstance(value, (int, float)):
                    check_value(stage, key, value, state.global_step, precision, lr)

    trainer.add_callback(EvalGuard())


def check_weights(job, model) -> None:
    """Rank 0 before the hand-back: finite losses but NaN/inf weights (e.g. an fp16 overflow in
    one layer) still fail the stage, so nothing downstream runs on them."""
    from fnsft.models.precision import nonfinite_tensors

    broken = nonfinite_tensors(model.state_dict())
    if broken:
        msg = (f"stage {job.stage_name}: {len(broken)} weight tensors hold NaN/inf after training "
               f"(e.g. {broken[0]}); likely float16 overflow or a learning rate too high")
        record_failure(job, msg)
        raise NonFiniteLoss(msg)


def check_finite_stats(stage: str, stats: dict, step: int, precision, learning_rate, job=None) -> None:
    """The RL loop's guard: every ``*loss`` stat of a minibatch must be finite (else the stage
    stops with one line, recorded for the driver like the HF trainers' guard)."""
    for key, value in stats.items():
        if key.endswith("loss") and not math.isfinite(float(value)):
            err = NonFiniteLoss(nonfinite_message(stage, key, step, float(value), precision, learning_rate)
                                .replace(" at step ", " at iteration "))
            if job is not None:
                record_failure(job, str(err))
            raise err
