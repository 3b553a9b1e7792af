"""Mid-epoch resume of a streamed stage: the rows trained on before a restart leave the rest of
that epoch *before* Ray Train splits the stream.

Ray Data decides at run time which blocks reach which worker, so a restarted stage cannot skip
"the first N rows" of a worker's shard: they would be other rows. Each checkpoint therefore holds
the ids (``row_id``) of the rows trained on so far in its epoch (:mod:`fnsft.workers.hf.stream`).
A resumed stage hands them to a :class:`SkipRows` actor; the tokenizers of the next Ray Data
execution (the resumed epoch's) read them when they start and leave those rows out, and the
split that follows balances what is left between the workers (filtering in the workers would
leave one worker short of rows: it would start the next epoch while the others still train, and
wait for them forever). The first worker clears the set when the following epoch begins.
"""

from __future__ import annotations

import uuid


class SkipRows:
    """The row ids to leave out of the next Ray Data execution (a Ray actor, one per streamed stage)."""

    def __init__(self):
        import numpy as np

        self.ids = np.zeros(0, dtype=np.int64)

    def set(self, ids) -> int:
        import numpy as np

        self.ids = np.asarray(ids, dtype=np.int64)
        return len(self.ids)

    def clear(self) -> None:
        self.set([])

    def get(self):
        return self.ids


def start_skip_rows(stage_name: str) -> tuple[object, str]:
    """A new :class:`SkipRows` actor (no CPU), named for this stage and run only; ``(handle, name)``."""
    import ray

    name = f"fnsft-{stage_name}-skip-rows-{uuid.uuid4().hex[:12]}"
    return ray.remote(num_cpus=0)(SkipRows).options(name=name).remote(), name


def skip_ids(name: str) -> frozenset:
    """The ids the actor ``name`` holds now (empty when it is gone: nothing to leave out)."""
    import ray

    try:
        actor = ray.get_actor(name)
    except ValueError:
        return frozenset()
    return frozenset(int(x) for x in ray.get(actor.get.remote()))
