"""A small append-only judgement cache (jsonl), keyed by a hash of everything that decides a verdict.

Stand-in with the shared ``CallCache`` interface (``get``/``put``, :func:`cache_key`) until the
API layer's ``fnsft.actors.call_cache`` is merged; then :mod:`fnsft.judges.base` uses that one.
A line is written (and flushed) per judgement, so a crash loses nothing already judged, and a
half-written last line is skipped on reload.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from typing import Any, Optional


def cache_key(*parts: Any) -> str:
    """SHA-256 of the parts (JSON-encoded, order kept)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False).encode()).hexdigest()


class CallCache:
    """``get(key) -> value | None`` and ``put(key, value)`` over ``path`` (created on first put)."""

    def __init__(self, path: Optional[str]):
        self.path = path
        self._data: dict[str, Any] = {}
        self._lock = threading.Lock()
        if path and os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    try:
                        row = json.loads(line)
                        self._data[row["key"]] = row["value"]
                    except (ValueError, KeyError, TypeError):  # a line cut by a crash
                        continue

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: str) -> bool:
        return key in self._data

    def get(self, key: str) -> Any:
        return self._data.get(key)

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            if not self.path:
                return
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"key": key, "value": value}, ensure_ascii=False) + "\n")
