"""Rollouts that survive a role actor's restart (a lost node): rank 0 of the RL loop.

Ray restarts a role actor whose node died (:data:`fnsft.actors.group.ROLE_MAX_RESTARTS`) but
does not retry its calls: a restarted generation actor holds the weights it was built with. A
call that fails because its actor died (or because a restarted actor refuses to sample before
it has the current weights) makes :func:`rollout_with_recovery` wait, bounded, until every role
is back, re-send the policy's current weights (:meth:`~fnsft.actors.serving.WeightPusher.resync`)
and run the rollout again: the iteration is redone from its prompts, nothing the learner saw is
lost.
"""

from __future__ import annotations

from typing import Callable

from fnsft.errors import StageError
from fnsft.utils.console import say

ROLLOUT_ATTEMPTS = 3  # one rollout and two retries after role restarts


def rollout_with_recovery(collect: Callable[[], object], roles, pusher, stage_name: str,
                          timeout_s: float = 600.0) -> tuple[object, dict[str, float]]:
    """``collect()``'s rollout, retried after a role actor restarted; ``(rollout, stats)`` where
    ``stats`` holds ``role_recoveries`` (retries) and the resyncs' ``weight_resyncs`` /
    ``weight_sync_mismatches`` (empty when nothing failed)."""
    import ray

    from fnsft.actors.serving import StaleWeightsError

    lost = (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError, StaleWeightsError)
    stats: dict[str, float] = {}
    resync = False
    for attempt in range(ROLLOUT_ATTEMPTS):
        try:
            if resync:  # inside the try: the actor may fail again while it is brought up to date
                for key, value in pusher.resync().items():
                    stats[key] = stats.get(key, 0.0) + value
            return collect(), stats
        except lost as e:
            if attempt + 1 == ROLLOUT_ATTEMPTS:
                raise StageError(f"{stage_name}: a role actor failed {ROLLOUT_ATTEMPTS} times in one rollout "
                                 f"({type(e).__name__}); see the actors' logs") from e
            say(f"[{stage_name}] a role actor failed ({type(e).__name__}): waiting for Ray to restart it, "
                f"re-sending the policy's weights (version {pusher.version}) and redoing the rollout")
            roles.wait_ready(timeout_s)  # bounded: StageError if a role cannot come back
            stats["role_recoveries"] = stats.get("role_recoveries", 0.0) + 1
            resync = True
    raise AssertionError("unreachable")
