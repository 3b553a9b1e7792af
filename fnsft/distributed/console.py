"""One line from a Ray worker onto the driver's console."""

from __future__ import annotations

import sys


def say(line: str) -> None:
    """Write ``line`` to stdout, which Ray forwards to the driver once.

    Inside Ray Train V2 workers ``print`` is patched to also go through Train's logger, so a
    printed progress line shows up twice on the driver; writing to stdout directly does not.
    """
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
