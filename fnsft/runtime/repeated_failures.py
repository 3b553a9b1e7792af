"""Stop restarting a Train job's workers when they fail the same way again and again.

``resources.max_failures`` restarts the worker group from its last checkpoint after a failure
(``-1``: forever). That is right for a lost node or a killed worker, and pointless for an error
the training code raises every time (a missing column, a NaN recorded for the job, a bad
config): the job would restart forever, or burn every allowed restart on the same line.
:class:`RepeatedFailureStop`, a Ray Train callback on the controller, counts failures by their
one line (:func:`fnsft.utils.one_line.error_line`); when one error is in :data:`REPEATS`
consecutive failures of the group, it ends the run with that line, recorded for the driver in
the run's HandoffStore (:func:`fnsft.workers.finite_guard.recorded_failure` reads it), so the
stage's :class:`~fnsft.errors.StageError` is the error itself. Deaths of a worker process or a
node (Ray's own errors) never count: restarting is what they need.
"""

from __future__ import annotations

from typing import Any

from ray.train import UserCallback

from fnsft.errors import StageError
from fnsft.utils.one_line import error_line, innermost

# Failures in a row with one error before the restarts stop: the first may be a fluke of the
# moment (a full disk, a port taken), the third in a row is not.
REPEATS = 3


def _counts(error: BaseException) -> bool:
    """An error the training code raised, not a worker's or node's death (Ray's own errors)."""
    import ray.exceptions
    from ray.train.v2.api.exceptions import RayTrainError

    return not isinstance(innermost(error), (ray.exceptions.RayError, RayTrainError))


class RepeatedFailureStop(UserCallback):
    """Ends the run when one error repeats :data:`REPEATS` times in a row (see the module doc).

    ``store``/``job_key``: the run's HandoffStore and the job's key, where the line is recorded
    for the driver (None in tests: only raised).
    """

    def __init__(self, stage: str, store: Any = None, job_key: str = "", repeats: int = REPEATS):
        self.stage, self.store, self.job_key, self.repeats = stage, store, job_key, repeats
        self.streaks: dict[str, int] = {}

    def after_exception(self, run_context, worker_exceptions: dict[int, Exception]) -> None:
        lines = [error_line(e, typed=True) for _, e in sorted(worker_exceptions.items()) if _counts(e)]
        self.streaks = {line: self.streaks.get(line, 0) + 1 for line in lines}
        repeated = next((line for line in lines if self.streaks[line] >= self.repeats), None)
        if repeated is None:
            return
        message = (f"{repeated} (stage {self.stage}: the workers failed with it {self.streaks[repeated]} times "
                   "in a row; restarting them (resources.max_failures) stopped)")
        self._record(message)
        raise StageError(message)

    def _record(self, message: str) -> None:
        """Leave the line for the driver unless a worker recorded its own (a NaN loss's)."""
        if self.store is None:
            return
        from fnsft.workers.finite_guard import record_failure_line, recorded_failure

        if recorded_failure(self.store, self.job_key) is None:
            record_failure_line(self.store, self.job_key, message)


def repeated_failure_callbacks(job: Any) -> list:
    """The callbacks to add to a Train job's ``RunConfig``: one :class:`RepeatedFailureStop`."""
    return [RepeatedFailureStop(job.stage_name, job.store, job.key)]
