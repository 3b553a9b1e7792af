"""One ``max_judge_calls`` counter per run, whatever number of processes judge for it.

The RL loop sends a copy of the run's judge to every reward actor; each copy keeps its own books
(:class:`~fnsft.judges.base.JudgeBooks`), but all of them must spend ONE budget. The driver
starts a :class:`CallBudget` as a small Ray actor (:func:`start_call_budget`) and the judge's
copies carry its handle, so every reservation goes through the one counter the run owns (it
dies with the run's driver). Without Ray the plain object counts in-process.
"""

from __future__ import annotations

import threading
from typing import Any, Optional


class CallBudget:
    """``reserve(n)`` grants up to ``n`` of the ``cap`` calls left (0 once spent); thread-safe."""

    def __init__(self, cap: int):
        self.cap = int(cap)
        self._spent = 0
        self._lock = threading.Lock()

    def __getstate__(self):  # a plain budget pickled without Ray: a copy of the count so far
        return {"cap": self.cap, "_spent": self._spent}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def reserve(self, n: int) -> int:
        with self._lock:
            granted = max(0, min(n, self.cap - self._spent))
            self._spent += granted
            return granted

    def spent(self) -> int:
        with self._lock:
            return self._spent


class SharedBudget:
    """A :class:`CallBudget` living in a Ray actor, used like the plain one (its handle pickles)."""

    def __init__(self, actor: Any, cap: int):
        self.actor, self.cap = actor, cap

    def reserve(self, n: int) -> int:
        import ray

        return ray.get(self.actor.reserve.remote(n))

    def spent(self) -> int:
        import ray

        return ray.get(self.actor.spent.remote())


def start_call_budget(cap: int, name: Optional[str] = None):
    """The run's budget of ``cap`` calls: a :class:`SharedBudget` actor (named ``name``, on the
    driver's node, owned by the calling driver) when Ray is up, else a plain :class:`CallBudget`."""
    import ray

    if not ray.is_initialized():
        return CallBudget(cap)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = ray.get_runtime_context().get_node_id()  # the driver's node: never a worker node that may go
    actor = ray.remote(CallBudget).options(
        name=name, get_if_exists=bool(name), num_cpus=0, max_concurrency=1,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=True)).remote(cap)
    return SharedBudget(actor, cap)
