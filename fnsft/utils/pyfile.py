"""Import a user's ``.py`` file by path (reward functions, environments and tools, teacher
functions, stage plugins), a failure as one :class:`~fnsft.errors.ConfigError` line naming the key.

The module is registered in ``sys.modules`` under ``name`` so that objects defined in it pickle
by reference (each Ray process imports the file again by the same path and name).
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import threading
from types import ModuleType
from typing import Callable, Optional

from fnsft.errors import ConfigError

# One import at a time: the module sits in sys.modules while its file runs, so a second thread
# (an environment actor answers resets concurrently) asking with ``reuse`` would otherwise get
# the half-executed module and miss names defined further down.
_LOCK = threading.RLock()


def looks_like_file(target: str) -> bool:
    """Whether a ``target`` of ``target:name`` is a file path rather than a module name."""
    return target.endswith(".py") or os.sep in target or target.startswith(".")


def module_name(prefix: str, path: str, whole_path: bool = False) -> str:
    """``prefix`` + the file's name (or its whole path, ``whole_path``) as an identifier."""
    base = path if whole_path else os.path.splitext(os.path.basename(path))[0]
    return prefix + re.sub(r"\W", "_", base)


def import_file(path: str, name: str, key: str, shown: str, reuse: bool = False,
                prepare: Optional[Callable[[ModuleType], None]] = None) -> ModuleType:
    """Execute the file at ``path`` as module ``name``; ``reuse``: an already imported module of
    that name and file is returned as it is. ``prepare`` sets names before the file runs.
    Errors: ``{key}: importing {shown} failed: <Type>: <message>`` (a ConfigError it raises passes)."""
    with _LOCK:
        return _import(path, name, key, shown, reuse, prepare)


def _import(path, name, key, shown, reuse, prepare) -> ModuleType:
    module = sys.modules.get(name)
    if reuse and module is not None and getattr(module, "__file__", None) == path:
        return module
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    if prepare is not None:
        prepare(module)
    sys.modules[name] = module  # during its own import too: dataclasses and pickling look it up
    try:
        spec.loader.exec_module(module)
    except ConfigError:
        sys.modules.pop(name, None)
        raise
    except Exception as e:
        sys.modules.pop(name, None)
        raise ConfigError(f"{key}: importing {shown} failed: {type(e).__name__}: {e}") from None
    return module
