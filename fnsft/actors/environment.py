"""The environment role (``rl.environment``): actors holding many text environments each.

An :class:`EnvironmentActor` keeps one environment per running episode, keyed by the episode,
built by the factory the stage passes in (:class:`fnsft.envs.wrappers.EnvironmentFactory`).
It runs threaded (:data:`EPISODE_THREADS` calls at once), so an episode whose ``step`` is slow
or hangs never holds up the others; the rollout (:mod:`fnsft.envs.rollout`) bounds each call
with ``step_timeout_s``. ``reset``/``step`` never raise: an exception comes back as
``{"error": ...}``, and the rollout ends that episode with reward 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

from fnsft.actors.group import ActorGroup

EPISODE_THREADS = 256  # concurrent calls per actor: a hung step holds one thread, not the actor


@dataclass
class EnvironmentRole:
    """The environment actors and the spec the rollout runs them with (``Roles.environment``)."""

    group: ActorGroup
    spec: Any  # fnsft.envs.wrappers.EnvironmentSpec


def _plain_info(info: Any) -> dict:
    """The numbers and strings of an ``info`` dict (what the rollout reads and counts)."""
    if not isinstance(info, dict):
        return {}
    return {str(k): v for k, v in info.items() if isinstance(v, (int, float, str, bool))}


def _error(e: BaseException) -> dict:
    return {"error": f"{type(e).__name__}: {e}"[:500]}


class EnvironmentActor:
    """Many environments, one per episode key; ``factory()`` builds one (a Ray actor via ActorGroup)."""

    def __init__(self, factory, replica: int = 0):
        self.factory, self.replica = factory, replica
        self.envs: dict[str, Any] = {}

    def ready(self) -> bool:
        return True

    def reset(self, key: str, seed: Optional[int], row: dict) -> dict:
        """A new environment for episode ``key``: ``{"observation", "info"}`` or ``{"error"}``."""
        try:
            env = self.factory()
            self.envs[key] = env
            observation, info = env.reset(seed=seed, options={"row": row})
            return {"observation": observation, "info": _plain_info(info)}
        except Exception as e:
            return _error(e)

    def step(self, key: str, action: str) -> dict:
        """``{"observation", "reward", "terminated", "truncated", "info"}`` or ``{"error"}``."""
        try:
            observation, reward, terminated, truncated, info = self.envs[key].step(action)
            reward = float(reward)
            if not math.isfinite(reward):
                raise ValueError(f"step returned a non-finite reward {reward}")
            return {"observation": observation, "reward": reward, "terminated": bool(terminated),
                    "truncated": bool(truncated), "info": _plain_info(info)}
        except Exception as e:
            return _error(e)

    def close(self, key: str) -> None:
        env = self.envs.pop(key, None)
        close = getattr(env, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # an environment's cleanup never fails the stage
                pass


def launch_environments(spec, resources, name: str) -> EnvironmentRole:
    """``resources.num_replicas`` environment actors (threaded), outside the roles' placement group
    (``num_cpus: 0`` by default: light Python processes)."""
    group = ActorGroup(EnvironmentActor, resources, args=(spec.factory,), name=f"{name}-environment",
                       max_concurrency=EPISODE_THREADS)
    return EnvironmentRole(group, spec)
