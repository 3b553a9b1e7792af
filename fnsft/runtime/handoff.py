"""A small actor that owns the objects stages hand to each other — one per run.

Objects in Ray's store die with the process that put them. Train workers exit when their job
ends, so rank 0 sends the trained weights (numpy arrays) to this actor, which puts its own copy
and keeps the reference for the driver to pick up.

Every run (a pipeline, a Tune trial) has its own store, named ``fnsft-handoff-<run id>`` and
owned by that run's driver: any number of runs share a cluster (``ray job submit`` twice, a
sweep beside a pipeline) without one's store dying with another's driver. The store lives as
long as the run holds it (:func:`run_store`).

The store is pinned to the driver's node: a restarted Train worker group asks it for the run's
recorded failure and hands its weights to it, so it must outlive any worker node (a store placed
on a worker node that is lost takes the whole run down with ``ActorDiedError``).
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any, Iterator, Optional

_PREFIX = "fnsft-handoff-"
_current: Optional[Any] = None  # this process's run store (set by run_store)
_current_job: Optional[str] = None  # the Ray job it belongs to (a new ray.init starts afresh)


def _actor_class():
    import ray

    @ray.remote(num_cpus=0, max_concurrency=4)
    class HandoffStore:
        def __init__(self):
            self._items: dict[str, Any] = {}

        def ready(self) -> bool:
            return True

        def put(self, key: str, value: Any) -> None:
            # ObjectRefs stay references here: they are wrapped in lists by the caller.
            self._items[key] = value

        def adopt(self, key: str, packed_weights: dict, info: dict) -> None:
            """Re-put weights sent by a Train worker so that this actor owns the copy.

            (Ray >= 2.56 removed ``ray.put(_owner=...)``; an object put by a worker dies with it.)
            """
            import ray

            ref = ray.put(packed_weights)
            del packed_weights
            self._items[key] = {**info, "weights": [ref]}

        def take(self, key: str) -> Any:
            return self._items.pop(key, None)

    return HandoffStore


def new_run_id(label: str = "run") -> str:
    """A cluster-wide unique id for one run: ``<label>-<12 hex>``."""
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in label)[:40] or "run"
    return f"{safe}-{uuid.uuid4().hex[:12]}"


@contextlib.contextmanager
def run_store(run_id: Optional[str] = None) -> Iterator[Any]:
    """This run's store for the ``with`` block (created here, or the one already open in this
    process: a Tune trial opens its own before the pipeline it runs)."""
    global _current
    if _alive():
        yield _current
        return
    store = _open(_PREFIX + (run_id or new_run_id()))
    try:
        yield store
    finally:
        _current = None


def get_handoff_store():
    """The store of this process's current run (inside :func:`run_store`).

    Outside a run (a stage executed on its own, e.g. by a test or a user's script) a store is
    created for the process and kept until it exits.
    """
    if not _alive():
        _open(_PREFIX + new_run_id("process"))
    return _current


def _alive() -> bool:
    import ray

    return _current is not None and ray.is_initialized() and _current_job == ray.get_runtime_context().get_job_id()


def _open(name: str):
    global _current, _current_job
    import ray

    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()  # the driver's node: never a worker node that may go
    store = _actor_class().options(name=name, lifetime=None, scheduling_strategy=NodeAffinitySchedulingStrategy(
        node_id=here, soft=False)).remote()
    ray.get(store.ready.remote())
    _current, _current_job = store, ray.get_runtime_context().get_job_id()
    return store


def current_store():
    """This process's run store, or None outside a run (never creates one)."""
    return _current if _alive() else None
