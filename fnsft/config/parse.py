"""Turn plain YAML dicts into typed, validated dataclasses.

Works on any stdlib dataclass (ours and users' stage configs): unknown keys get a "did you
mean", required fields are enforced, values are checked and coerced against the type hints.
Every error is a one-line :class:`ConfigError` naming the key path.
"""

from __future__ import annotations

import dataclasses
import difflib
import keyword
import types
import typing
from typing import Any, Literal, Union

from fnsft.config.bounds import check_bounds, finite
from fnsft.errors import ConfigError

_MISSING = dataclasses.MISSING


def yaml_key(name: str) -> str:
    """The YAML key of a dataclass field: a Python keyword's field carries a trailing ``_``
    (``class_``) and is written without it (``environment.class``)."""
    return name[:-1] if name.endswith("_") and keyword.iskeyword(name[:-1]) else name


def did_you_mean(name: str, choices) -> str:
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"a list of {_type_name(args[0])}" if args else "a list"
    if origin is dict or tp is dict:
        return "a mapping"
    if tp is Any:
        return "any value"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def coerce(value: Any, tp: Any, path: str) -> Any:
    """Check ``value`` against type ``tp``; return it converted (e.g. "2e-4" -> 2e-4)."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, path)
            except ConfigError as e:
                errors.append(e)
        raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value in choices:
            return value
        raise ConfigError(
            f"{path}: {value!r} is not accepted; expected one of "
            + ", ".join(repr(c) for c in choices)
            + did_you_mean(value, [str(c) for c in choices])
        )
    if origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, str) and tp is not str:
            value = [value] if origin is list or tp is list else value
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}")
        args = typing.get_args(tp)
        item_tp = args[0] if args else Any
        return [coerce(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping (key: value), got {value!r}")
        args = typing.get_args(tp)
        if args:
            return {k: coerce(v, args[1], f"{path}.{k}") for k, v in value.items()}
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping of {tp.__name__} keys, got {value!r}")
        return parse_dataclass(tp, value, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
            return value.lower() in ("true", "yes")
        raise ConfigError(f"{path}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{path}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return finite(float(value), path)
        if isinstance(value, str):  # YAML reads 2e-4 (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
            else:
                return finite(number, path)
        raise ConfigError(f"{path}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{path}: expected a string, got {value!r}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}")


def _known_fields(cls: type, data: dict, path: str) -> tuple[dict, dict]:
    """``cls``'s type hints and init fields; an unknown key in ``data`` is a ConfigError."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception as e:  # a user's annotation we cannot resolve
        raise ConfigError(f"{path}: cannot read the type hints of {cls.__name__}: {e}") from None
    fields = {yaml_key(f.name): f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            raise ConfigError(
                f"{path}.{key}: unknown key{did_you_mean(key, fields)}; "
                f"accepted keys: {', '.join(sorted(fields))}"
            )
    return hints, fields


def parse_dataclass(cls: type, data: dict | None, path: str, *, fixed: dict | None = None):
    """Build ``cls`` from ``data``. ``fixed`` values are set by the pipeline, not the user."""
    data = dict(data or {})
    hints, fields = _known_fields(cls, data, path)
    kwargs = {}
    for name, f in fields.items():
        if fixed and f.name in fixed:
            kwargs[f.name] = fixed[f.name]
            continue
        if name in data:
            kwargs[f.name] = coerce(data[name], hints.get(f.name, Any), f"{path}.{name}")
            check_bounds(name, kwargs[f.name], f"{path}.{name}")
        elif f.default is _MISSING and f.default_factory is _MISSING:
            help_text = f.metadata.get("help")
            raise ConfigError(
                f"{path}.{name}: required key is missing"
                + (f" ({help_text})" if help_text else "")
            )
    try:
        obj = cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{path}: {e}") from None
    return obj


def check_keys(cls: type, data: dict | None, path: str):
    """Like :func:`parse_dataclass` (unknown keys, types, nested sections) but required keys may be
    missing: for a draft section of a stage that is not run yet. Returns a namespace of the
    values (given or default; a missing required key is absent)."""
    import types as _types

    data = dict(data or {})
    hints, fields = _known_fields(cls, data, path)
    values = {}
    for name, f in fields.items():
        if name in data:
            values[f.name] = coerce(data[name], hints.get(f.name, Any), f"{path}.{name}")
            check_bounds(name, values[f.name], f"{path}.{name}")
        elif f.default is not _MISSING:
            values[f.name] = f.default
        elif f.default_factory is not _MISSING:
            values[f.name] = f.default_factory()
    return _types.SimpleNamespace(**values)


def to_dict(obj) -> dict:
    """A dataclass as plain data (for the resolved-config dump and fingerprints)."""
    return dataclasses.asdict(obj, dict_factory=lambda items: {yaml_key(k): v for k, v in items})
