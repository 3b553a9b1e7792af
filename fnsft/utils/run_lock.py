"""One pipeline per ``output_dir`` at a time.

Two runs writing one folder would overwrite each other's manifest, summary and models. A run
holds an exclusive ``fcntl.flock`` on ``<output_dir>/.fnsft.lock`` while it runs; the file names
the holder (pid, host, start time) so a second run can say who has it. The OS drops the flock
when the process dies however it dies (SIGKILL, OOM), so a lock never outlives its run: a file
still naming a run whose flock is gone is taken over, and the caller logs that.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from typing import Iterator, Optional

from fnsft.errors import ConfigError

LOCK_FILE = ".fnsft.lock"


@contextlib.contextmanager
def output_dir_lock(output_dir: str) -> Iterator[Optional[str]]:
    """Hold ``output_dir``'s lock for the ``with`` block; yields a line describing the dead run
    whose lock was taken over (``None`` when the lock was free and clean).

    Raises a one-line :class:`ConfigError` when another live run holds it.
    """
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"output_dir {output_dir} is in use by another fnsft run ({_holder(_read(fd))}); "
                              "wait for it to end, or give this run another --output_dir") from None
        previous = _read(fd)
        taken_over = (f"output_dir {output_dir}: took over the lock of an earlier run ({_holder(previous)}) "
                      "that ended without releasing it") if previous else None
        _write(fd, {"pid": os.getpid(), "host": socket.gethostname(),
                    "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")})
        try:
            yield taken_over
        finally:
            os.ftruncate(fd, 0)  # a clean end: nothing for the next run to take over
    finally:
        os.close(fd)  # drops the flock


def _read(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = b""
    while chunk := os.read(fd, 1 << 16):
        raw += chunk
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError:  # being written right now, or not ours: still a holder
        return {"pid": "?"}
    return data if isinstance(data, dict) else {"pid": "?"}


def _write(fd: int, data: dict) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(data).encode())
    os.fsync(fd)


def _holder(info: dict) -> str:
    where = f"pid {info.get('pid', '?')} on host {info.get('host', '?')}"
    return f"{where}, started {info['started']}" if info.get("started") else where
