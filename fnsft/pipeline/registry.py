"""Which stage name maps to which class.

Three sources, in order: built-in stages (imported lazily, so validation stays light),
``Pipeline.register_stage`` calls (from ``plugins:`` modules/files or user code), and the
``fnsft.stages`` entry-point group of installed packages (name = stage name, value = class).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
from typing import Optional

from fnsft.errors import ConfigError
from fnsft.utils.pyfile import import_file, module_name

BUILTIN_STAGES = {
    "sft": "fnsft.stages.sft:SFTStage",
    "dpo": "fnsft.stages.dpo:DPOStage",
    "rl": "fnsft.stages.rl:RLStage",
    "rlaif": "fnsft.stages.rlaif:RLAIFStage",
    "cot_distillation": "fnsft.stages.cot_distillation:CoTDistillationStage",
}

_registered: dict[str, type] = {}
_config_classes: dict[str, type] = {}
_entry_points_loaded = False


def register_stage(name: str, stage_class: type, config_class: Optional[type] = None) -> None:
    from fnsft.stages.base import BaseStage

    if not (isinstance(stage_class, type) and issubclass(stage_class, BaseStage)):
        raise ConfigError(f"register_stage('{name}'): {stage_class!r} is not a BaseStage subclass")
    _registered[name] = stage_class
    if config_class is not None:
        _config_classes[name] = config_class


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group="fnsft.stages"):
        if ep.name in _registered:
            continue
        try:
            register_stage(ep.name, ep.load())
        except ConfigError:
            raise
        except Exception as e:
            raise ConfigError(f"entry point fnsft.stages:{ep.name} ({ep.value}) failed to load: {e}") from None


def available_stages() -> list[str]:
    _load_entry_points()
    return sorted(set(BUILTIN_STAGES) | set(_registered))


def get_stage_class(name: str) -> type:
    if name in _registered:
        return _registered[name]
    if name in BUILTIN_STAGES:
        module, attr = BUILTIN_STAGES[name].split(":")
        cls = getattr(importlib.import_module(module), attr)
        _registered[name] = cls
        return cls
    _load_entry_points()
    if name in _registered:
        return _registered[name]
    from fnsft.config.parse import did_you_mean

    raise ConfigError(
        f"stages: unknown stage '{name}'{did_you_mean(name, available_stages())}; "
        f"registered stages: {', '.join(available_stages())}"
    )


def get_config_class(name: str, stage_class: type) -> type:
    """The stage's config dataclass: explicit, ``config_class``, or found beside the class."""
    from fnsft.stages.base import StageConfig

    if name in _config_classes:
        return _config_classes[name]
    if getattr(stage_class, "config_class", None) is not None:
        return stage_class.config_class
    module = sys.modules.get(stage_class.__module__)
    candidates = [
        obj for obj in vars(module).values()
        if isinstance(obj, type) and dataclasses.is_dataclass(obj)
        and issubclass(obj, StageConfig) and obj is not StageConfig
        and obj.__module__ == stage_class.__module__
    ] if module else []
    by_name = [c for c in candidates if c.__name__ == stage_class.__name__ + "Config"]
    if by_name:
        return by_name[0]
    if len(candidates) == 1:
        return candidates[0]
    return StageConfig


def import_plugins(plugins: list[str], base_dir: str) -> None:
    """Import ``plugins:`` entries: dotted module names or .py files (relative to the config)."""
    for i, spec in enumerate(plugins):
        key = f"plugins[{i}]"
        if spec.endswith(".py") or os.sep in spec or spec.startswith("."):
            path = spec if os.path.isabs(spec) else os.path.join(base_dir, spec)
            if not os.path.isfile(path) and os.path.isfile(spec):
                path = spec
            if not os.path.isfile(path):
                raise ConfigError(f"{key}: plugin file {spec} not found (looked in {base_dir} and the current folder)")
            # The guide's example stage uses @dataclass and field() without importing them; a
            # plugin file starts with both defined so that example runs as printed.
            def prepare(module):
                module.dataclass, module.field = dataclasses.dataclass, dataclasses.field

            import_file(path, module_name("fnsft_plugin_", path), key, spec, prepare=prepare)
        else:
            try:
                importlib.import_module(spec)
            except ModuleNotFoundError as e:
                raise ConfigError(f"{key}: module {spec} not found ({e}); give a module on the "
                                  "Python path or a .py file path") from None
            except ConfigError:
                raise
            except Exception as e:
                raise ConfigError(f"{key}: importing {spec} failed: {type(e).__name__}: {e}") from None
