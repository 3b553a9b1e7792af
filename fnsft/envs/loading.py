"""Load what ``rl.environment`` names — the environment class and the tools — and check it
before Ray starts: one :class:`~fnsft.errors.ConfigError` line naming the key otherwise.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from fnsft.errors import ConfigError
from fnsft.utils.pyfile import import_file, looks_like_file, module_name


def resolve_ref(ref: str) -> str:
    """``ref`` with a file path made absolute (actors may run in another directory)."""
    target, sep, attr = ref.rpartition(":")
    if sep and _is_file(target):
        return f"{os.path.abspath(os.path.expanduser(target))}:{attr}"
    return ref


_is_file = looks_like_file


def load_object(ref: str, key: str) -> Any:
    """The object ``path/to/file.py:Name`` or ``module:Name`` names (a ConfigError naming ``key``)."""
    if not isinstance(ref, str) or ":" not in ref:
        raise ConfigError(f"{key}: give 'path/to/file.py:Name' or 'module:Name' (got {ref!r})")
    target, _, attr = ref.rpartition(":")
    if _is_file(target):
        path = os.path.abspath(os.path.expanduser(target))
        if not os.path.isfile(path):
            raise ConfigError(f"{key}: file {target} not found")
        module = import_file(path, module_name("fnsft_env_", path, whole_path=True), key, target, reuse=True)
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as e:
            raise ConfigError(f"{key}: module {target!r} not found ({e})") from None
        except Exception as e:
            raise ConfigError(f"{key}: importing {target} failed: {type(e).__name__}: {e}") from None
    if not hasattr(module, attr):
        raise ConfigError(f"{key}: {target} has no {attr!r}")
    return getattr(module, attr)


def load_environment_class(ref: str, key: str) -> type:
    """The class ``ref`` names, checked to have gymnasium's ``reset`` and ``step``."""
    cls = load_object(ref, key)
    if not isinstance(cls, type):
        raise ConfigError(f"{key}: {ref} is not a class")
    missing = [m for m in ("reset", "step") if not callable(getattr(cls, m, None))]
    if missing:
        raise ConfigError(f"{key}: {ref} has no {' or '.join(missing)} method; an environment needs gymnasium's "
                          "reset(*, seed, options) -> (message, info) and step(action) -> "
                          "(observation, reward, terminated, truncated, info)")
    return cls
