"""Load what ``rl.environment`` names — the environment class and the tools — and check it
before Ray starts: one :class:`~fnsft.errors.ConfigError` line naming the key otherwise.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from typing import Any

from fnsft.errors import ConfigError


def resolve_ref(ref: str) -> str:
    """``ref`` with a file path made absolute (actors may run in another directory)."""
    target, sep, attr = ref.rpartition(":")
    if sep and _is_file(target):
        return f"{os.path.abspath(os.path.expanduser(target))}:{attr}"
    return ref


def _is_file(target: str) -> bool:
    return target.endswith(".py") or os.sep in target or target.startswith(".")


def load_object(ref: str, key: str) -> Any:
    """The object ``path/to/file.py:Name`` or ``module:Name`` names (a ConfigError naming ``key``)."""
    if not isinstance(ref, str) or ":" not in ref:
        raise ConfigError(f"{key}: give 'path/to/file.py:Name' or 'module:Name' (got {ref!r})")
    target, _, attr = ref.rpartition(":")
    if _is_file(target):
        path = os.path.abspath(os.path.expanduser(target))
        if not os.path.isfile(path):
            raise ConfigError(f"{key}: file {target} not found")
        mod_name = "fnsft_env_" + re.sub(r"\W", "_", path)
        module = sys.modules.get(mod_name)
        if module is None:
            spec = importlib.util.spec_from_file_location(mod_name, path)
            module = importlib.util.module_from_spec(spec)
            try:
                spec.loader.exec_module(module)
            except Exception as e:
                raise ConfigError(f"{key}: importing {target} failed: {type(e).__name__}: {e}") from None
            sys.modules[mod_name] = module  # pickling the class by reference finds it
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
