"""What a stage asks of Ray, what the machine or cluster can give, and whether it fits.

Ray waits, silently and forever, for a placement group that can never be placed (Train V2's
controller retries its worker-group start without end). A stage therefore checks its whole
demand — Train workers (``resources``) plus role actors (``rl.generation``, ``rl.reward``,
``rl.reference``) — against what the cluster has or can grow to, before anything is reserved,
and fails in seconds with one line naming both sides.

``resources.cpus_per_worker`` left out (``null``) means *use the machine*: the node's CPUs are
split between the stage's workers (a lone worker gets all of them, as torch threads), after the
role actors' share. Ray would otherwise give a 1-CPU worker ``OMP_NUM_THREADS=1`` and leave the
other cores idle. A local Ray started by fnsft gets the role actors' CPUs on top of the
machine's: roles (generation, scoring) and the learner take turns, so they share the cores.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Optional

# Set by ensure_ray when it started Ray in-process: that Ray's logical CPUs sit on this
# machine's cores, so threads are counted in cores, not in Ray's (inflated) logical CPUs.
_local_cores: Optional[int] = None
# Runs sharing the cluster at once by design (a Tune trial sets max_concurrent_trials): the
# automatic CPU share is divided between them.
_concurrent_runs: int = 1


def machine_cores() -> int:
    """CPUs this process may run on (cgroup/affinity aware where the OS says)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def set_local_cores(cores: Optional[int]) -> None:
    global _local_cores
    _local_cores = cores


def set_concurrent_runs(n: int) -> None:
    global _concurrent_runs
    _concurrent_runs = max(1, int(n))


def _fmt(res: dict[str, float], zeros: bool = False) -> str:
    parts = [f"{v:g} {k}" for k, v in sorted(res.items()) if v or zeros]
    return ", ".join(parts) or "nothing"


def _add(total: dict[str, float], bundle: dict[str, float], times: float = 1.0) -> None:
    for k, v in bundle.items():
        total[k] = total.get(k, 0.0) + v * times


@dataclass
class Demand:
    """One stage's placement: ``num_workers`` Train workers of ``worker`` each, plus role bundles."""

    what: str  # "stage rl"
    num_workers: int
    worker: dict[str, float]
    roles: list[dict[str, float]] = field(default_factory=list)
    strategy: str = "PACK"

    def total(self) -> dict[str, float]:
        out: dict[str, float] = {}
        _add(out, self.worker, self.num_workers)
        for b in self.roles:
            _add(out, b)
        return out

    def describe(self) -> str:
        text = f"{self.num_workers} Train worker(s) x {{{_fmt(self.worker)}}}"
        if self.roles:
            roles: dict[str, float] = {}
            for b in self.roles:
                _add(roles, b)
            text += f" + role actors {{{_fmt(roles)}}}"
        return text


@dataclass
class Capacity:
    """What the cluster has, or can grow to under its autoscaler."""

    nodes: list[dict[str, float]]  # the largest shape of each node (or node type)
    total: dict[str, float]
    source: str  # "this machine", "the cluster", "the cluster (with its autoscaler's maximum)"
    driver_node: bool = False  # one node, the one this driver runs on (its cores are known here)
    may_grow: bool = False  # an autoscaler of unknown reach (v1): never call a plan impossible

    def biggest(self, key: str) -> float:
        return max((n.get(key, 0.0) for n in self.nodes), default=0.0)


def problem(demand: Demand, cap: Capacity) -> Optional[str]:
    """Why ``demand`` can never be placed on ``cap`` (None when it can, or when ``cap`` may grow)."""
    if cap.may_grow:
        return None
    need = demand.total()
    short = {k: v for k, v in need.items() if v > cap.total.get(k, 0.0) + 1e-9}
    if not short:
        bundles = [demand.worker] * demand.num_workers + demand.roles
        too_big = [b for b in bundles if not any(all(n.get(k, 0.0) + 1e-9 >= v for k, v in b.items())
                                                  for n in cap.nodes)]
        if too_big:
            return (f"{demand.what} asks for {demand.describe()}: no node has {{{_fmt(too_big[0])}}} "
                    f"(largest node: {{{_fmt(max(cap.nodes, key=lambda n: n.get('CPU', 0.0)) if cap.nodes else {})}}})")
        if demand.strategy in ("STRICT_PACK",) and not any(
                all(n.get(k, 0.0) + 1e-9 >= v for k, v in need.items()) for n in cap.nodes):
            return f"{demand.what} asks for {demand.describe()} on one node (STRICT_PACK): no node is that large"
        return None
    return (f"{demand.what} asks for {demand.describe()} = {{{_fmt(need)}}} but {cap.source} has "
            f"{{{_fmt({k: cap.total.get(k, 0.0) for k in need}, zeros=True)}}}")


def auto_cpus_per_worker(num_workers: int, cap: Capacity, role_cpus: float = 0.0) -> float:
    """``cpus_per_worker`` when the config leaves it out: the machine split between the workers.

    ``min(largest node, (all CPUs / concurrent runs - role actors) / workers)``, in whole CPUs,
    at least 1 (fewer would run more processes than cores). On a node that is this machine,
    CPUs are counted in cores (a local Ray may carry extra logical CPUs for the role actors).
    """
    biggest = cap.biggest("CPU")
    total = cap.total.get("CPU", 0.0)
    cores = _cores_cap(cap)
    if cores is not None:
        biggest = min(biggest, cores)
        total = min(total, cores + role_cpus * _concurrent_runs)
    share = total / _concurrent_runs - role_cpus
    return float(max(1, math.floor(min(biggest, share / max(1, num_workers)) + 1e-9)))


def _cores_cap(cap: Capacity) -> Optional[int]:
    if _local_cores is not None:
        return _local_cores
    if cap.source == "this machine" or cap.driver_node:
        return machine_cores()
    return None


def torch_threads(cpus_per_worker: float) -> int:
    """Torch/OpenMP threads for a worker holding ``cpus_per_worker`` CPUs (at least 1)."""
    return max(1, int(math.floor(cpus_per_worker + 1e-9)))


def local_ray_cpus(user_num_cpus: Optional[int], role_cpus: float, concurrent: int = 1,
                   trial_cpus: float = 0.0) -> int:
    """Logical CPUs of an in-process Ray: the user's ``ray.num_cpus``, else this machine's
    cores plus what the role actors (and Tune trials) hold while the learner computes."""
    if user_num_cpus:
        return int(user_num_cpus)
    return int(math.ceil(machine_cores() + concurrent * (role_cpus + trial_cpus) - 1e-9))


def local_capacity(num_cpus: int, num_gpus: Optional[int] = None) -> Capacity:
    node = {"CPU": float(num_cpus), **({"GPU": float(num_gpus)} if num_gpus else {})}
    return Capacity(nodes=[node], total=dict(node), source="this machine")


def cluster_capacity() -> Capacity:
    """The live cluster (alive nodes), or what its autoscaler may grow it to, whichever is more.

    With an autoscaler whose limits are known (:mod:`fnsft.compat.ray_autoscaler`), the cluster
    is bounded by its node types and ``max_workers``; one whose limits cannot be read only
    "may grow", and no plan is called impossible on it."""
    import ray

    from fnsft.compat.ray_autoscaler import autoscaler_limits, v1_autoscaler_running

    alive = [n for n in ray.nodes() if n.get("Alive")]
    nodes = [dict(n.get("Resources", {})) for n in alive]
    total: dict[str, float] = dict(ray.cluster_resources())
    limits = autoscaler_limits()
    here = ray.get_runtime_context().get_node_id()
    driver_node = len(nodes) == 1 and alive[0].get("NodeID") == here
    if limits is None:
        return Capacity(nodes=nodes, total=total, source="the cluster", driver_node=driver_node,
                        may_grow=v1_autoscaler_running())
    head = [r for r in nodes if "node:__internal_head__" in r]
    return grown_capacity(nodes, total, head[0] if head else {}, limits, driver_node)


def grown_capacity(nodes: list[dict[str, float]], total: dict[str, float], head: dict[str, float],
                   limits, driver_node: bool = False) -> Capacity:
    """The most the cluster can hold under ``limits`` (an
    :class:`~fnsft.compat.ray_autoscaler.AutoscalerLimits`): the head plus, per resource, the
    largest worker nodes the limits allow (each type up to its ``max_workers``, all of them up
    to the cluster's), or the live cluster where that is larger. An upper bound: a plan above
    it can never be placed; one below may still wait for nodes."""
    from fnsft.compat.ray_autoscaler import AutoscalerLimits

    assert isinstance(limits, AutoscalerLimits)
    nodes = list(nodes) + [dict(t.resources) for t in limits.node_types if t.max_workers > 0]
    keys = set(total) | {k for t in limits.node_types for k in t.resources}
    grown = dict(total)
    for key in keys:
        left = limits.max_workers if limits.max_workers is not None else 10**6
        most = head.get(key, 0.0)
        for t in sorted(limits.node_types, key=lambda t: -t.resources.get(key, 0.0)):
            n = min(t.max_workers, left)
            most += n * t.resources.get(key, 0.0)
            left -= n
        grown[key] = max(total.get(key, 0.0), most)
    cap = f" max_workers: {limits.max_workers}" if limits.max_workers is not None else ""
    return Capacity(nodes=nodes, total=grown, driver_node=driver_node,
                    source=f"the cluster (at most, under the autoscaler's{cap} from {limits.source})")


def free_resources() -> dict[str, float]:
    import ray

    return dict(ray.available_resources())
