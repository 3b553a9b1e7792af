"""An append-only cache of paid-for answers (judgements, teacher rationales) in a stage's output folder.

A rerun or a resumed run asks the cache first, so it never pays twice for the same answer. One
JSON line per answer, ``{"key": ..., "value": ...}``; each write is flushed and fsynced before
:meth:`CallCache.put` returns, so a killed run loses nothing it already wrote. A line cut short by
a kill is dropped when the file is opened again; damaged lines are skipped and counted (one log
line), never a crash. Used by the API client and by local backends.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from typing import Any, Iterator, Optional

log = logging.getLogger("fnsft")


def _canonical(obj: Any) -> str:
    # Sorted keys and no whitespace: the same parts always give the same bytes.
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=repr)


def cache_key(*parts: Any) -> str:
    """sha256 hex of a canonical JSON of ``parts`` (backend identity, template, inputs, order, sampling...)."""
    return hashlib.sha256(_canonical(list(parts)).encode("utf-8")).hexdigest()


class CallCache:
    """``CallCache(path)``: ``get(key)``, ``put(key, value)``, ``key in cache``, ``len(cache)``.

    Values must be JSON-serializable. Thread-safe; several processes may append to one file
    (each line is one ``write`` to a file opened with ``O_APPEND``).
    """

    def __init__(self, path: str):
        self.path = str(path)
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self._lock = threading.Lock()
        self._data: dict[str, Any] = {}
        self.dropped_lines = 0
        self._load()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _load(self) -> None:
        if not os.path.exists(self.path):
            return
        with open(self.path, "rb") as f:
            raw = f.read()
        end = raw.rfind(b"\n") + 1
        if end < len(raw):
            # A write cut short by a kill: drop the partial line so the next append starts clean.
            with open(self.path, "r+b") as f:
                f.truncate(end)
            self.dropped_lines += 1
        for line in raw[:end].splitlines():
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                self._data[row["key"]] = row["value"]
            except (ValueError, KeyError, TypeError):
                self.dropped_lines += 1
        if self.dropped_lines:
            log.warning("%s: skipped %d damaged line(s) (a write cut short or garbled); their answers are "
                        "asked again when needed", self.path, self.dropped_lines)

    def get(self, key: str, default: Optional[Any] = None) -> Any:
        with self._lock:
            return self._data.get(key, default)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._data

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` durably (append, flush, fsync) before returning."""
        line = (_canonical({"key": key, "value": value}) + "\n").encode("utf-8")
        with self._lock:
            written = os.write(self._fd, line)
            if written < len(line):  # rare short write on a regular file: finish the line
                os.write(self._fd, line[written:])
            os.fsync(self._fd)
            self._data[key] = value

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def keys(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._data))

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
