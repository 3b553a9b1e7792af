"""The one line a failure shows on the console and in the summary.

An exception raised inside a Ray actor or task reaches the driver wrapped: ``ray.get`` raises a
``RayTaskError`` (made an instance of the original class too) whose text starts with
``ray::ApiClient.chat() (pid=…, ip=…)`` and the remote traceback. The user's line is the
innermost cause's: :func:`error_line` unwraps to it.
"""

from __future__ import annotations

import sys

from fnsft.errors import FnsftError


def innermost(e: BaseException) -> BaseException:
    """``e`` without Ray's task/actor wrappers (the exception the remote code raised)."""
    rx = sys.modules.get("ray.exceptions")  # not loaded: no Ray error can exist
    while rx is not None and isinstance(e, rx.RayTaskError) and e.cause is not None and e.cause is not e:
        e = e.cause
    return e


def error_line(e: BaseException, typed: bool = False) -> str:
    """One line for ``e``: an fnsft error's own message (``typed``: after its type, as the
    summary records it), otherwise ``Type: first line``."""
    e = innermost(e)
    text = str(e).strip()
    first = text.splitlines()[0] if text else ""
    if isinstance(e, FnsftError) and not typed:
        return first or type(e).__name__
    return f"{type(e).__name__}: {first}" if first else type(e).__name__
