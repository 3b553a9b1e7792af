"""``ActorGroup``: N replicas of one role, placed in a placement group, called as one.

The role classes (:class:`~fnsft.actors.generation.GenerationActor`, ...) are plain Python
classes, usable without Ray (tests call them directly); ``ActorGroup`` turns one into Ray
actors. Calls are ordinary method references, not names::

    group = ActorGroup(GenerationActor, RoleResources(num_replicas=2), args=(handle,), pg=pg, bundle_offset=0)
    outs = group.split(prompts, lambda actor, chunk: actor.generate.remote(chunk, sampling))
    acks = group.all(lambda actor: actor.load_weights.remote(ref))

:func:`reserve_bundles` makes one placement group for all roles of a stage (PACK: on one node
when it fits), so the roles' CPUs/GPUs are reserved before the Train job asks for its own.

Node loss: every replica is started with ``max_restarts`` (:data:`ROLE_MAX_RESTARTS`); when its
node dies, Ray reschedules the placement group's bundle on a node with room and restarts the
actor there (``__init__`` again, from the stage's model handle). Calls are not retried by Ray
(``max_task_retries=0``): a restarted generation actor holds the weights it was built with,
so the caller re-pushes the current ones first and retries the call itself
(:meth:`fnsft.actors.serving.WeightPusher.resync`). :meth:`ActorGroup.nodes` says where each
replica runs (the stage's ``placement`` metric).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from fnsft.errors import StageError

ROLE_MAX_RESTARTS = 4  # restarts per role actor over a stage (each one a lost node or crash)


class Located:
    """Mixed into every role class by :class:`ActorGroup`: where this actor runs."""

    def node(self) -> dict[str, str]:
        """``{"node_id", "ip"}`` of the node this actor runs on."""
        import ray

        return {"node_id": ray.get_runtime_context().get_node_id(), "ip": ray.util.get_node_ip_address()}


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
    """``num_replicas`` Ray actors of ``actor_cls`` built with the same arguments.

    ``runtime_env``: more of Ray's ``runtime_env`` for every replica (its ``env_vars`` join the
    defaults): the generation role on vLLM's CPU build runs under that venv's ``py_executable``.
    """

    def __init__(self, actor_cls: type, resources: RoleResources, args: tuple = (), kwargs: Optional[dict] = None,
                 pg=None, bundle_offset: Optional[int] = None, name: str = "", max_concurrency: int = 1,
                 runtime_env: Optional[dict] = None):
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        self.name = name or actor_cls.__name__
        self.resources = resources
        # A subclass with the same name (Ray shows it): the role's methods plus ``node()``.
        remote_cls = ray.remote(type(actor_cls.__name__, (actor_cls, Located), {"__module__": actor_cls.__module__}))
        self.actors = []
        for i in range(resources.num_replicas):
            opts: dict[str, Any] = {"num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus,
                                    "max_concurrency": max_concurrency,
                                    "max_restarts": ROLE_MAX_RESTARTS, "max_task_retries": 0}
            if pg is not None and bundle_offset is not None:
                opts["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                    placement_group=pg, placement_group_bundle_index=bundle_offset + i)
            threads = max(1, int(resources.num_cpus))
            env = {"OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
            extra = dict(runtime_env or {})  # e.g. vLLM's venv: py_executable + its env_vars
            opts["runtime_env"] = {**extra, "env_vars": {**env, **extra.pop("env_vars", {})}}
            self.actors.append(remote_cls.options(**opts).remote(*args, **(kwargs or {}), replica=i))

    def __len__(self) -> int:
        return len(self.actors)

    def wait_ready(self, timeout_s: Optional[float] = None) -> None:
        """Block until every replica has finished ``__init__`` (raises its error otherwise).

        A replica whose node was just lost reads as unavailable until Ray notices and restarts
        it: asked again until ``timeout_s`` (None: no bound, as at start-up)."""
        import time

        import ray

        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                ray.get([a.ready.remote() for a in self.actors], timeout=left)
                return
            except ray.exceptions.ActorUnavailableError:
                if deadline is not None and time.monotonic() >= deadline:
                    break
                time.sleep(1.0)
            except ray.exceptions.RayActorError as e:
                raise StageError(f"{self.name} actor failed to start: {e}") from e
            except ray.exceptions.GetTimeoutError:
                break
        raise StageError(f"{self.name}: an actor was not (re)started within {timeout_s:g}s; the cluster "
                         "has no node with room for it (add one, or lower the role's num_cpus)")

    def nodes(self, timeout_s: float = 60.0) -> list[dict[str, str]]:
        """Each replica's ``{"replica", "node_id", "ip"}``, in order (the stage's ``placement``)."""
        import ray

        where = ray.get([a.node.remote() for a in self.actors], timeout=timeout_s)
        return [{"replica": i, **w} for i, w in enumerate(where)]

    def all(self, call: Callable[[Any], Any]) -> list:
        """``call(actor)`` on every replica (it returns an ObjectRef); their results, in order."""
        import ray

        return ray.get([call(a) for a in self.actors])

    def split(self, items: Sequence, call: Callable[[Any, list], Any]) -> list:
        """Split ``items`` into contiguous chunks, one per replica; results concatenated in order.

        Each ``call(actor, chunk)`` must return an ObjectRef of a list (one entry per item) or
        of a dict of such lists (concatenated key by key); a dict's other values (a generate
        call's ``version``, a number) come back as a list with one per chunk.
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
            return {k: [x for p in parts for x in (p[k] if isinstance(p[k], list) else [p[k]])]
                    for k in parts[0]}  # type: ignore[return-value]
        return [x for p in parts for x in p]

    def kill(self) -> None:
        import ray

        for a in self.actors:
            try:
                ray.kill(a)
            except Exception:  # already gone
                pass
        self.actors = []
