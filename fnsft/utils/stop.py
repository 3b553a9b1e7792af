"""SIGTERM (``ray job stop``, a scheduler's kill) as an exception, so a run can record that it stopped.

Without a handler the driver dies mid-write (or, once Ray has started in the process, Ray's own
handler dumps a stack and aborts), and ``pipeline_summary.json`` still says the stage is running.
:func:`stop_on_sigterm` turns the first SIGTERM into :class:`RunStopped` in the main thread; like
``KeyboardInterrupt`` it is a ``BaseException``, so ``except Exception`` in a stage does not
swallow it. A second SIGTERM kills the process as usual.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Iterator


class RunStopped(BaseException):
    """The process was asked to stop (SIGTERM) while a run was going."""

    exit_code = 128 + signal.SIGTERM


def _raise_stopped(signum, frame) -> None:
    signal.signal(signum, signal.SIG_DFL)  # the next one kills: a stop that hangs can still be forced
    raise RunStopped(f"stopped by {signal.Signals(signum).name}")


def _inside_ray_task() -> bool:
    """Whether this process runs a Ray task or actor (a Tune trial): Ray owns its signals."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return False
    ctx = ray.get_runtime_context()
    return ctx.get_actor_id() is not None or ctx.get_task_id() is not None


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`RunStopped`. Only in a driver's main thread:
    elsewhere (a Tune trial's actor or thread) signals are not ours to take and nothing changes."""
    if threading.current_thread() is not threading.main_thread() or _inside_ray_task():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_stopped)
    try:
        yield
    finally:
        # After a stop the default is back (a second SIGTERM kills): keep it. None: a handler set
        # outside Python (Ray's), which Python cannot put back; ours stays.
        if previous is not None and signal.getsignal(signal.SIGTERM) is _raise_stopped:
            signal.signal(signal.SIGTERM, previous)
