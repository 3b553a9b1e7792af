"""Append-only jsonl cache of calls (placeholder with the ``api`` branch's interface).

The ``api`` branch owns this module (``CallCache(path)`` with ``get``/``put``, ``cache_key``);
this minimal copy lets the CoT teacher cache be built before it lands. At merge, take ``api``'s.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from typing import Any, Optional


def cache_key(*parts: Any) -> str:
    """A stable hash of ``parts`` (JSON with sorted keys)."""
    blob = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class CallCache:
    """``key -> value`` kept in memory and appended to ``path`` (one JSON line per put)."""

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        self._data: dict[str, Any] = {}
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:  # a line cut by a crash: that call is simply redone
                        continue
                    self._data[row["key"]] = row["value"]

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: str) -> bool:
        return key in self._data

    def get(self, key: str) -> Optional[Any]:
        return self._data.get(key)

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"key": key, "value": value}, ensure_ascii=False) + "\n")
