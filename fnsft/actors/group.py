"""``ActorGroup``: N replicas of one role, placed in a placement group, called as one.

The role classes (:class:`~fnsft.actors.generation.GenerationActor`, ...) are plain Python
classes, usable without Ray (tests call them directly); ``ActorGroup`` turns one into Ray
actors. Calls are ordinary method references, not names::

    group = ActorGroup(GenerationActor, RoleResources(num_replicas=2), args=(handle,), pg=pg, bundle_offset=0)
    outs = group.split(prompts, lambda actor, chunk: actor.generate.remote(chunk, sampling))
    acks = group.all(lambda actor: actor.load_weights.remote(ref))

:func:`reserve_bundles` makes one placement group for all roles of a stage (PACK: on one node
when it fits), so the roles' CPUs/GPUs are reserved before the Train job asks for its own.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from fnsft.errors import StageError


@dataclass
class RoleResources:
    """Resources of one role (YAML ``rl.generation``, ``rl.reward``, ``rl.reference``)."""

    num_replicas: int = field(default=1, metadata={"help": "Actors in this role (generation: batches split across them)."})
    num_cpus: float = field(default=1.0, metadata={"help": "CPUs per actor (also its torch threads when >= 1)."})
    num_gpus: float = field(default=0.0, metadata={"help": "GPUs per actor (0: CPU)."})


def _bundle(res: RoleResources) -> dict[str, float]:
    b = {"CPU": float(res.num_cpus)} if res.num_cpus > 0 else {}
    if res.num_gpus > 0:
        b["GPU"] = float(res.num_gpus)
    return b


def reserve_bundles(roles: Sequence[RoleResources], name: str, timeout_s: float = 120.0):
    """One placement group with a bundle per actor of every role; ``(pg, first bundle index per role)``.

    Roles with no CPU/GPU (e.g. ``num_cpus: 0``) get no bundle and index ``None``.
    """
    import ray
    from ray.util.placement_group import placement_group

    bundles, offsets = [], []
    for res in roles:
        b = _bundle(res)
        if not b:
            offsets.append(None)
            continue
        offsets.append(len(bundles))
        bundles.extend(dict(b) for _ in range(res.num_replicas))
    if not bundles:
        return None, offsets
    # Named per run: two pipelines on one cluster must not share (or collide on) a name.
    pg = placement_group(bundles, strategy="PACK", name=f"{name}-{uuid.uuid4().hex[:8]}")
    ready, _ = ray.wait([pg.ready()], timeout=timeout_s)
    if not ready:
        ray.util.remove_placement_group(pg)
        need = {k: sum(b.get(k, 0) for b in bundles) for k in ("CPU", "GPU")}
        raise StageError(
            f"{name}: the RL roles need {need['CPU']:g} CPU / {need['GPU']:g} GPU but the cluster has "
            f"{ray.available_resources()} free; lower rl.generation/reward/reference num_cpus or "
            "raise ray.num_cpus")
    return pg, offsets


class ActorGroup:
    """``num_replicas`` Ray actors of ``actor_cls`` built with the same arguments."""

    def __init__(self, actor_cls: type, resources: RoleResources, args: tuple = (), kwargs: Optional[dict] = None,
                 pg=None, bundle_offset: Optional[int] = None, name: str = "", max_concurrency: int = 1):
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        self.name = name or actor_cls.__name__
        self.resources = resources
        remote_cls = ray.remote(actor_cls)
        self.actors = []
        for i in range(resources.num_replicas):
            opts: dict[str, Any] = {"num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus,
                                    "max_concurrency": max_concurrency}
            if pg is not None and bundle_offset is not None:
                opts["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                    placement_group=pg, placement_group_bundle_index=bundle_offset + i)
            threads = max(1, int(resources.num_cpus))
            opts["runtime_env"] = {"env_vars": {"OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}}
            self.actors.append(remote_cls.options(**opts).remote(*args, **(kwargs or {}), replica=i))

    def __len__(self) -> int:
        return len(self.actors)

    def wait_ready(self, timeout_s: Optional[float] = None) -> None:
        """Block until every replica has finished ``__init__`` (raises its error otherwise)."""
        import ray

        try:
            ray.get([a.ready.remote() for a in self.actors], timeout=timeout_s)
        except ray.exceptions.RayActorError as e:
            raise StageError(f"{self.name} actor failed to start: {e}") from e

    def all(self, call: Callable[[Any], Any]) -> list:
        """``call(actor)`` on every replica (it returns an ObjectRef); their results, in order."""
        import ray

        return ray.get([call(a) for a in self.actors])

    def split(self, items: Sequence, call: Callable[[Any, list], Any]) -> list:
        """Split ``items`` into contiguous chunks, one per replica; results concatenated in order.

        Each ``call(actor, chunk)`` must return an ObjectRef of a list (one entry per item) or
        of a dict of such lists (concatenated key by key).
        """
        import ray

        n = len(self.actors)
        size, extra = divmod(len(items), n)
        chunks, start = [], 0
        for i in range(n):
            end = start + size + (i < extra)
            chunks.append(list(items[start:end]))
            start = end
        refs = [call(a, c) for a, c in zip(self.actors, chunks) if c]
        parts = ray.get(refs)
        if parts and isinstance(parts[0], dict):
            return {k: [x for p in parts for x in p[k]] for k in parts[0]}  # type: ignore[return-value]
        return [x for p in parts for x in p]

    def kill(self) -> None:
        import ray

        for a in self.actors:
            try:
                ray.kill(a)
            except Exception:  # already gone
                pass
        self.actors = []
