"""Asynchronous rollouts with a staleness bound (YAML ``rl.async_rollout``): rank 0 of the RL loop.

The synchronous loop alternates: the generation actors sample batch k, then idle while the
learner trains on it, then the learner idles while they sample batch k + 1. Here, when the
learner takes batch k it has already sent the generate calls of batches k + 1 … k + s
(``s = max_staleness``): the actors sample (and the reward actors score) them while the learner
trains. Each rollout runs :func:`fnsft.actors.rollout.collect_rollout` in a thread of this
process; its generate calls are sent before :meth:`AsyncRollouts.take` returns, so the weight
push that follows the update queues *behind* them on every actor (an actor runs one caller's
calls in order) and lands between two generate calls, while the learner goes on.

The bound: a batch whose calls were sent during iteration ``it`` samples with version ``it``
(the push after update ``it − 1`` came first) and is trained on at iteration ``j ≤ it + s``, so
it lags by at most ``s`` versions. ``s = 0`` sends batch k when the learner asks for it: the
synchronous schedule (same prompts, same seeds, same losses). Every row records the version it
was sampled with (``policy_version``, from the actor) and the sampler's log-probs, for
:mod:`fnsft.rl.off_policy`.

Checkpoints (``save_steps``) keep the prompt order as it was before the first in-flight batch
was drawn (:meth:`draw_state`): a resumed run draws the same prompts again and redoes the
rollouts that were in flight (the samples themselves are not saved). Design as in veRL's
one-step-off-policy trainer and NeMo-RL's async GRPO, with Ray ObjectRefs for the hand-over.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

# (prompts of one iteration, the prompt-order state before they were drawn)
Draw = Callable[[int], tuple[list[dict], Any]]
# (iteration, its prompts, an event to set once the generate calls are sent) -> Rollout
Collect = Callable[[int, list[dict], threading.Event], Any]
# (iteration, its prompts) -> (Rollout, recovery stats): the synchronous redo after a lost actor
Redo = Callable[[int, list[dict]], tuple[Any, dict]]


@dataclass
class InFlight:
    """One rollout whose generate calls are sent: its prompts, the draw state before them, the result."""

    iteration: int
    rows: list[dict]
    draw_state: Any
    future: Future


class AsyncRollouts:
    """Rank 0's queue of rollouts running ahead of the learner (at most ``max_staleness`` of them
    beyond the one it trains on next).

    Args:
        max_staleness: YAML ``rl.async_rollout.max_staleness`` (>= 0).
        num_iterations: the stage's last iteration + 1: nothing is sampled past it.
        draw, collect, redo: the trainer's prompt draw, one rollout (run in a thread), and the
            synchronous rollout with recovery used when an in-flight one lost its actor.
        submit_timeout_s: the most seconds to wait for a rollout's generate calls to be sent.
    """

    def __init__(self, max_staleness: int, num_iterations: int, draw: Draw, collect: Collect, redo: Redo,
                 submit_timeout_s: float = 1800.0):
        self.max_staleness, self.num_iterations = max_staleness, num_iterations
        self.draw, self.collect, self.redo = draw, collect, redo
        self.submit_timeout_s = submit_timeout_s
        self.pool = ThreadPoolExecutor(max_workers=max_staleness + 1, thread_name_prefix="fnsft-rollout")
        self.in_flight: dict[int, InFlight] = {}

    def take(self, it: int) -> tuple[Any, dict[str, float]]:
        """Iteration ``it``'s rollout (waiting for it), after sending the generate calls of every
        batch up to ``it + max_staleness``; ``(rollout, recovery stats)``."""
        for j in range(it, min(it + self.max_staleness, self.num_iterations - 1) + 1):
            if j not in self.in_flight:
                self._submit(j)
        job = self.in_flight.pop(it)
        try:
            return job.future.result(), {}
        except Exception as e:
            if not actor_lost(e):
                raise
            # A role actor died under this rollout: redo it here, with the resync of recovery.py
            # (later in-flight rollouts that hit the same actor are redone when their turn comes).
            return self.redo(it, job.rows)

    def _submit(self, j: int) -> None:
        rows, state = self.draw(j)
        sent = threading.Event()
        future = self.pool.submit(self.collect, j, rows, sent)
        # Wait until the generate calls are on their way (or the rollout failed before): a weight
        # push sent after this returns queues behind them, so the batch samples the current version.
        waited = 0.0
        while not sent.wait(0.01) and not future.done():
            waited += 0.01
            if waited > self.submit_timeout_s:
                from fnsft.actors.rollout import role_timeout

                raise role_timeout("generation", "to accept a batch", self.submit_timeout_s)
        self.in_flight[j] = InFlight(j, rows, state, future)

    def draw_state(self, it: int) -> Any:
        """The prompt-order state before iteration ``it``'s prompts were drawn, if they were
        (its rollout is in flight); ``None`` when nothing from ``it`` on was drawn yet."""
        job = self.in_flight.get(it)
        return job.draw_state if job is not None else None

    def close(self) -> None:
        """Drop the rollouts still in flight (an error stopped the loop) and end the threads."""
        for job in self.in_flight.values():
            job.future.cancel()
        self.in_flight.clear()
        self.pool.shutdown(wait=False, cancel_futures=True)


def actor_lost(error: BaseException) -> bool:
    """Whether ``error`` means a role actor died or was restarted (the rollout can be redone)."""
    import ray

    from fnsft.actors.serving import StaleWeightsError

    return isinstance(error, (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError, StaleWeightsError))
