"""Resolve ``model_name_or_path`` cheaply (for validation) and to a loadable path (for runs)."""

from __future__ import annotations

import os
import re

from fnsft.errors import ConfigError
from fnsft.models.builtin import BUILTIN_MODELS, check_builtin, materialize_builtin

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


def describe_model(spec: str) -> str:
    if spec.startswith("builtin:"):
        return f"{spec} ({BUILTIN_MODELS.get(spec, '?')})"
    if os.path.isdir(os.path.expanduser(spec)):
        return f"{spec} (local directory)"
    return f"{spec} (hub id)"


def check_model_spec(spec: str, key: str = "model_name_or_path") -> None:
    """Fail fast on a model spec that cannot work; never loads weights."""
    if spec.startswith("builtin:"):
        check_builtin(spec)
        return
    path = os.path.expanduser(spec)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise ConfigError(f"{key}: {spec} is a directory without config.json; give a Hugging Face model directory")
        return
    if spec.startswith((".", "/", "~")) or os.sep in spec and not _HUB_ID.match(spec):
        raise ConfigError(f"{key}: model directory {spec} not found; give a local directory, a hub id or one of {', '.join(BUILTIN_MODELS)}")
    if not _HUB_ID.match(spec):
        raise ConfigError(f"{key}: {spec!r} is not a local directory, a hub id (org/name) or a built-in ({', '.join(BUILTIN_MODELS)})")


def resolve_model_path(spec: str) -> str:
    """A directory (or hub id) that ``from_pretrained`` can load."""
    if spec.startswith("builtin:"):
        return materialize_builtin(spec)
    path = os.path.expanduser(spec)
    return os.path.abspath(path) if os.path.isdir(path) else spec
