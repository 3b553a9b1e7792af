"""A small actor that owns the objects stages hand to each other.

Objects in Ray's store die with the process that put them. Train workers exit when their job
ends, so rank 0 sends the trained weights (numpy arrays) to this actor, which puts its own copy
(it lives as long as the driver) and keeps the reference for the driver to pick up.
"""

from __future__ import annotations

from typing import Any

_NAME = "fnsft_handoff_store"


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


def get_handoff_store():
    """The driver's store actor (created on first use, found by name afterwards)."""
    import ray

    store = _actor_class().options(name=_NAME, get_if_exists=True, lifetime=None).remote()
    ray.get(store.ready.remote())
    return store
