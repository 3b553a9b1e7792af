"""Load and validate everything a run needs, before Ray or any model starts.

``build_plan`` reads the YAML, applies overrides, imports plugins, resolves each stage to its
class and typed config, runs each stage's ``validate_config`` (which reads the first records of
its data), and checks the model spec. Every problem is a one-line ``ConfigError``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

from fnsft.config.loading import apply_overrides, read_yaml
from fnsft.config.parse import did_you_mean, parse_dataclass
from fnsft.config.resources import effective_resources
from fnsft.config.schema import PipelineConfig
from fnsft.distributed.deepspeed_config import describe_deepspeed
from fnsft.errors import ConfigError
from fnsft.models.spec import check_model_spec
from fnsft.pipeline import registry
from fnsft.pipeline.sizing import check_local_fit, describe_ray, describe_resources


@dataclass
class PlannedStage:
    index: int  # 1-based position in ``stages:``; names the output folder <NN>_<stage>
    name: str
    stage: Any  # BaseStage instance
    selected: bool = True

    @property
    def config(self):
        return self.stage.config


@dataclass
class Plan:
    config: PipelineConfig
    stages: list[PlannedStage]
    config_path: Optional[str] = None
    raw: dict = field(default_factory=dict)

    @property
    def selected(self) -> list[PlannedStage]:
        return [s for s in self.stages if s.selected]


def stage_output_dir(output_dir: str, index: int, name: str) -> str:
    return os.path.join(output_dir, f"{index:02d}_{name}")


def parse_pipeline_config(data: dict) -> PipelineConfig:
    cfg = parse_dataclass(PipelineConfig, data, "config")
    if not cfg.stages:
        raise ConfigError("stages: empty; list the stages to run, e.g. stages: [sft]")
    dupes = {s for s in cfg.stages if cfg.stages.count(s) > 1}
    if dupes:
        raise ConfigError(f"stages: {', '.join(sorted(dupes))} listed twice; each stage runs once")
    for name in cfg.stage_configs:
        if name not in cfg.stages:
            raise ConfigError(
                f"stage_configs.{name}: no stage '{name}' in stages{did_you_mean(name, cfg.stages)}; "
                f"stages: {', '.join(cfg.stages)}")
    return cfg


def build_plan(
    config_path: Optional[str] = None,
    *,
    data: Optional[dict] = None,
    overrides: Optional[list[str]] = None,
    select: Optional[list[str]] = None,
) -> Plan:
    raw = read_yaml(config_path) if config_path else dict(data or {})
    raw = apply_overrides(raw, overrides or [])
    cfg = parse_pipeline_config(raw)
    base_dir = os.path.dirname(os.path.abspath(config_path)) if config_path else os.getcwd()
    registry.import_plugins(cfg.plugins, base_dir)
    cfg.output_dir = os.path.abspath(os.path.expanduser(cfg.output_dir))

    if select:
        for name in select:
            if name not in cfg.stages:
                raise ConfigError(
                    f"--stages: '{name}' is not in the config's stages{did_you_mean(name, cfg.stages)}; "
                    f"stages: {', '.join(cfg.stages)}")

    check_model_spec(cfg.model_name_or_path)
    stages = []
    for index, name in enumerate(cfg.stages, start=1):
        stage_cls = registry.get_stage_class(name)
        config_cls = registry.get_config_class(name, stage_cls)
        key = f"stage_configs.{name}"
        section = cfg.stage_configs.get(name)
        if section is None:
            section = {}
        if not isinstance(section, dict):
            raise ConfigError(f"{key}: expected a mapping of the stage's settings, got {section!r}")
        out = section.get("output_dir") or stage_output_dir(cfg.output_dir, index, name)
        stage_cfg = parse_dataclass(
            config_cls, {k: v for k, v in section.items() if k != "output_dir"}, key,
            fixed={"stage_name": name, "output_dir": os.path.abspath(out)})
        stage = stage_cls(stage_cfg, cfg)
        selected = stage_cfg.enabled and (not select or name in select)
        planned = PlannedStage(index=index, name=name, stage=stage, selected=selected)
        if selected:
            if hasattr(stage_cfg, "resources") or hasattr(stage_cfg, "deepspeed"):
                effective_resources(cfg, stage_cfg, key)
            stage.validate_config()
        stages.append(planned)
    plan = Plan(config=cfg, stages=stages, config_path=config_path, raw=raw)
    if not plan.selected:
        raise ConfigError("stages: every stage is disabled or deselected; nothing to run")
    check_local_fit(plan)  # a local run that could never be placed fails now, not after Ray starts
    return plan


def describe_plan(plan: Plan) -> str:
    """The human-readable plan printed by ``--dry_run``."""
    from fnsft.models.spec import describe_model

    cfg = plan.config
    lines = [
        "fnsft pipeline plan",
        f"  config:      {plan.config_path or '(in memory)'}",
        f"  model:       {describe_model(cfg.model_name_or_path)}",
        f"  torch_dtype: {cfg.torch_dtype}",
        f"  output_dir:  {cfg.output_dir}",
        f"  ray:         {describe_ray(plan)}",
        "  stages:",
    ]
    for s in plan.stages:
        state = "run" if s.selected else ("disabled" if not s.config.enabled else "not selected")
        lines.append(f"    {s.index}. {s.name} [{state}] -> {s.config.output_dir}")
        if not s.selected:
            continue
        for k, v in s.stage.describe_plan().items():
            lines.append(f"         {k}: {v}")
        if hasattr(s.config, "resources"):
            res, ds = effective_resources(cfg, s.config, f"stage_configs.{s.name}")
            resources = describe_resources(plan, s)
            if resources:
                lines.append(f"         resources: {resources}")
            lines.append("         deepspeed: " + describe_deepspeed(ds, res.num_workers))
    return "\n".join(lines)
