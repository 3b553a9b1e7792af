"""Where a stage ran, in one line of the run report (from the stage's ``placement`` metric).

``metrics.placement`` in ``pipeline_summary.json``: ``{"workers": [{"rank", "node_id", "ip"}],
"roles": {"generation": [{"replica", "node_id", "ip"}], ...}}`` (the RL stage adds the roles).
A node shows as its IP and the first 6 characters of its Ray node id (nodes of a simulated or
single-machine cluster share an IP).
"""

from __future__ import annotations

from typing import Any


def _node(entry: dict) -> str:
    return f"{entry.get('ip', '?')}/{str(entry.get('node_id', ''))[:6]}"


def placement_line(metrics: dict[str, Any]) -> str:
    """``"rank 0 @ 10.0.0.1/ab12cd, rank 1 @ ...; generation 0 @ ...; reward 0 @ ..."`` or ``""``."""
    placement = metrics.get("placement")
    if not isinstance(placement, dict):
        return ""
    parts = [", ".join(f"rank {w.get('rank', i)} @ {_node(w)}" for i, w in enumerate(placement.get("workers") or []))]
    for role, replicas in (placement.get("roles") or {}).items():
        parts.append(", ".join(f"{role} {r.get('replica', i)} @ {_node(r)}" for i, r in enumerate(replicas)))
    return "; ".join(p for p in parts if p)
