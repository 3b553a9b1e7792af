"""Run-state files written whole or not at all, and read back with one line when damaged.

The manifest, ``pipeline_summary.json`` and similar files are rewritten as a run goes. A kill, a
full disk or a second writer must never leave half a file: :func:`write_json_atomic` writes a
temp file of its own (unique name, so two writers never rename each other's), fsyncs it, renames
it over the target and fsyncs the folder, so a reader sees the old document or the new one.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from fnsft.errors import ConfigError


def write_json_atomic(path: str, data: Any, indent: int = 2) -> None:
    """Replace ``path`` with ``data`` as JSON in one rename (its folder must exist)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=indent, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(folder)


def _fsync_dir(folder: str) -> None:
    # The rename is durable once the folder's entry is on disk (not every filesystem allows it).
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_json_state(path: str, what: str, remedy: str) -> dict:
    """The JSON object in run-state file ``path``; a file that is not one (cut short, edited,
    overwritten) is one :class:`ConfigError` line naming it, ``what`` it is and ``remedy``."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: the {what} is damaged ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else 'empty'}); {remedy}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the {what} is damaged (a JSON {type(data).__name__}, "
                          f"not an object); {remedy}")
    return data
