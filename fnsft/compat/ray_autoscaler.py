"""What the cluster's autoscaler may still add: its node types and ``max_workers``.

Ray has no public API for an autoscaler's limits (``ray.autoscaler.v2.sdk`` reports nodes and
demands, not node types or maxima), so this reads them where they are:

- autoscaler v2 reports its config to the GCS (``ray._private.state``, private; Ray 2.40-2.60);
- autoscaler v1 (``ray up`` VM clusters) reports nothing but its status; the cluster YAML it
  runs is on the head node (``~/ray_bootstrap_config.yaml``, written by ``ray up``), where a
  ``ray job submit`` driver runs. ``FNSFT_CLUSTER_YAML`` names another copy.

Either source missing or moved, or a Ray outside :data:`CHECKED`, gives ``None``: the caller
then cannot bound the cluster (it sizes the plan by the nodes alive now, or "may grow").
``tests/compat`` and ``tests/cluster/test_autoscaler_limits.py`` fail loudly when a private call
moves.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Optional

from fnsft.compat import in_range

CHECKED = ((2, 60), (2, 61))  # ray>=2.60,<2.61: the private GCS call and the status key
RAY_VERSIONS = (">=2.60", "<2.61")  # the same, as a requirement spec
# (module, name, attributes of it) the hooks rely on.
HOOKS = (("ray._private.state", "state", ("get_cluster_config",)),
         ("ray.experimental.internal_kv", "_internal_kv_get", ()))
STATUS_KEY = "__autoscaling_status"  # where autoscaler v1 writes its report
# Where `ray up` leaves the autoscaler's YAML on the head node.
BOOTSTRAP_YAML = "~/ray_bootstrap_config.yaml"


@dataclass(frozen=True)
class NodeType:
    """One worker node type the autoscaler may launch: its resources and how many at most."""

    name: str
    resources: dict[str, float]
    max_workers: int


@dataclass(frozen=True)
class AutoscalerLimits:
    """The autoscaler's worker node types and its cluster-wide ``max_workers`` (None: no cap)."""

    node_types: tuple[NodeType, ...]
    max_workers: Optional[int]
    source: str  # where the limits were read (named in error messages)


def checked() -> bool:
    return in_range("ray", *CHECKED)


def autoscaler_limits() -> Optional[AutoscalerLimits]:
    """The running autoscaler's limits, or None (no autoscaler, limits that cannot be read, or a
    Ray outside :data:`CHECKED`)."""
    if not checked():
        return None
    return _from_gcs() or (_from_yaml() if v1_autoscaler_running() else None)


def _from_gcs() -> Optional[AutoscalerLimits]:
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:  # no v2 autoscaler, or the private call moved (the compat test says which)
        return None
    if config is None or not config.node_group_configs:
        return None
    types = tuple(NodeType(g.name, {k: float(v) for k, v in g.resources.items()},
                           g.max_count if g.max_count >= 0 else 10**6)
                  for g in config.node_group_configs)
    return AutoscalerLimits(types, None, "the autoscaler's reported config")


def _from_yaml() -> Optional[AutoscalerLimits]:
    import yaml

    path = os.path.expanduser(os.environ.get("FNSFT_CLUSTER_YAML") or BOOTSTRAP_YAML)
    try:
        with open(path) as f:
            return limits_from_cluster_yaml(yaml.safe_load(f), path)
    except (OSError, ValueError, TypeError, AttributeError, yaml.YAMLError):
        return None  # absent, or not a cluster YAML we can read: the limits stay unknown


def limits_from_cluster_yaml(config: dict, source: str) -> AutoscalerLimits:
    """Worker node types (the head's excluded) and ``max_workers`` of a cluster launcher YAML."""
    head = config.get("head_node_type")
    types = tuple(NodeType(name, {k: float(v) for k, v in (t.get("resources") or {}).items()},
                           int(t.get("max_workers", config.get("max_workers", 2))))
                  for name, t in (config.get("available_node_types") or {}).items() if name != head)
    return AutoscalerLimits(types, int(config.get("max_workers", 2)), source)


def v1_autoscaler_running() -> bool:
    """A cluster launched from a cluster YAML (autoscaler v1) reports node types by name
    (``ray.head.default``, ``gpu_worker``); a plain ``ray start --head`` or a local Ray runs a
    read-only autoscaler whose only node types are ``node_<id>``: it cannot grow."""
    report = autoscaler_v1_report()
    if not report:
        return False
    types = set(report.get("active_nodes") or {}) | set(report.get("idle_nodes") or {})
    types |= {p[1] for p in report.get("pending_nodes") or [] if isinstance(p, (list, tuple)) and len(p) > 1}
    types |= set((report.get("node_type_mapping") or {}).values())
    return any(not str(t).startswith("node_") for t in types)


def autoscaler_v1_report() -> Optional[dict]:
    """Autoscaler v1's last status report (``active_nodes``, ``idle_nodes``, ``pending_nodes``),
    or None (no such autoscaler, another Ray)."""
    if not checked():
        return None
    try:
        from ray.experimental.internal_kv import _internal_kv_get

        raw = _internal_kv_get(STATUS_KEY)
        return (json.loads(raw).get("autoscaler_report") or None) if raw else None
    except Exception:
        return None
