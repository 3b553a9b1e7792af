"""The only place fnsft touches private code of its dependencies (Ray, TRL).

Each hook names the upstream version range it was checked against, uses the private path only
inside that range, and otherwise takes the public one (a slower or plainer behaviour, never a
wrong result). ``tests/compat`` asserts, for the installed versions, that every private name a
hook relies on still exists with the shape it expects: a dependency upgrade that moves one fails
that test, naming the hook, instead of failing somewhere deep in a Train worker.

- :mod:`fnsft.compat.ray_logging`: routing the worker output Ray forwards to the driver;
- :mod:`fnsft.compat.ray_train`: Ray Train's per-report log line inside a worker;
- :mod:`fnsft.compat.ray_autoscaler`: what a cluster's autoscaler may grow it to;
- :mod:`fnsft.compat.trl`: TRL's fused LM head on CPU; :mod:`fnsft.compat.trl_dpo`: the DPO
  trainer's private steps as named hooks.

Modules here import only the dependency they wrap (and this package), never the rest of fnsft.
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version


def installed_version(package: str) -> tuple[int, ...]:
    """``package``'s installed (major, minor, patch), or () when it is not installed."""
    try:
        text = version(package)
    except PackageNotFoundError:
        return ()
    parts = []
    for piece in text.split(".")[:3]:
        digits = re.match(r"\d+", piece)  # "0rc1" -> 0, then stop
        if digits is None:
            break
        parts.append(int(digits.group()))
        if digits.group() != piece:
            break
    return tuple(parts)


def in_range(package: str, low: tuple[int, ...], high: tuple[int, ...]) -> bool:
    """Whether ``low <= installed version < high`` for ``package`` (False when it is missing)."""
    v = installed_version(package)
    return bool(v) and low <= v < high
