"""Load and validate everything a run needs, before Ray or any model starts.

``build_plan`` reads the YAML, applies overrides, imports plugins, resolves each stage to its
class and typed config, runs each stage's ``validate_config`` (which reads the first records of
its data), and checks the model spec. Every problem is a one-line ``ConfigError``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Optional

from fnsft.config.loading import apply_overrides, read_yaml
from fnsft.config.checks import check_output_dir, check_resources, check_stage_values
from fnsft.config.parse import check_keys, did_you_mean, parse_dataclass
from fnsft.config.resources import effective_resources
from fnsft.config.schema import PipelineConfig
from fnsft.runtime.deepspeed_config import describe_deepspeed
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
    # Stages with a stage_configs section but not in stages (commented out while building a
    # pipeline up): validated, reported, never run.
    unlisted: list[str] = field(default_factory=list)

    @property
    def selected(self) -> list[PlannedStage]:
        return [s for s in self.stages if s.selected]


def stage_output_dir(output_dir: str, index: int, name: str) -> str:
    return os.path.join(output_dir, f"{index:02d}_{name}")


def parse_pipeline_config(data: dict) -> PipelineConfig:
    """The checked top-level config of ``data``, with ``output_dir`` made absolute (from the
    current directory, as the run sees it)."""
    cfg = parse_dataclass(PipelineConfig, data, "config")
    if not cfg.stages:
        raise ConfigError("stages: empty; list the stages to run, e.g. stages: [sft]")
    dupes = {s for s in cfg.stages if cfg.stages.count(s) > 1}
    if dupes:
        raise ConfigError(f"stages: {', '.join(sorted(dupes))} listed twice; each stage runs once")
    if not cfg.model_name_or_path:
        raise ConfigError("model_name_or_path: required key is missing; give a local Hugging Face folder, "
                          "a hub id or a built-in model (builtin:smollm2-135m-instruct, builtin:tiny-llama)")
    if cfg.cleanup_intermediate and not cfg.save_final_model:
        raise ConfigError("cleanup_intermediate: removes the stage copies once final_model is written, but "
                          "save_final_model is off; add --save_final_model (save_final_model: true)")
    check_resources(cfg.resources, "resources")
    return dataclasses.replace(cfg, output_dir=os.path.abspath(os.path.expanduser(cfg.output_dir)))


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

    if select:
        for name in select:
            if name not in cfg.stages:
                raise ConfigError(
                    f"--stages: '{name}' is not in the config's stages{did_you_mean(name, cfg.stages)}; "
                    f"stages: {', '.join(cfg.stages)}")

    check_output_dir(cfg.output_dir)
    check_model_spec(cfg.model_name_or_path)
    unlisted = _check_unlisted_sections(cfg)
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
        # Keys, values and nested sections are checked for every listed stage, disabled or not;
        # only data files and models (validate_config) wait until the stage is enabled.
        _check_values(cfg, stage_cfg, key)
        if selected:
            stage.validate_config()
        stages.append(planned)
    plan = Plan(config=cfg, stages=stages, config_path=config_path, raw=raw, unlisted=unlisted)
    if not plan.selected:
        raise ConfigError("stages: every stage is disabled or deselected; nothing to run")
    check_chat_templates(plan)
    if cfg.report.enabled and cfg.report.judge:  # the report's judge fails now, not after the first stage
        from fnsft.report.judging import report_judge_settings

        report_judge_settings(cfg.report.judge)
    check_local_fit(plan)  # a local run that could never be placed fails now, not after Ray starts
    return plan


def _check_values(cfg: PipelineConfig, stage_cfg: Any, key: str) -> None:
    check_stage_values(stage_cfg, key)
    if hasattr(stage_cfg, "resources") or hasattr(stage_cfg, "deepspeed"):
        res, _ = effective_resources(cfg, stage_cfg, key)
        check_resources(res, f"{key}.resources")


def _check_unlisted_sections(cfg: PipelineConfig) -> list[str]:
    """Sections for stages not in ``stages`` (the guide's "add DPO later"): the stage must exist and
    the keys and their types must be right (typos are caught now); required keys and data files
    are only checked once the stage is listed."""
    unlisted = []
    for name, section in cfg.stage_configs.items():
        if name in cfg.stages:
            continue
        key = f"stage_configs.{name}"
        if name not in registry.available_stages():
            raise ConfigError(
                f"{key}: no stage '{name}'{did_you_mean(name, list(cfg.stages) + registry.available_stages())}; "
                f"stages: {', '.join(cfg.stages)}; registered stages: {', '.join(registry.available_stages())}")
        if section is not None and not isinstance(section, dict):
            raise ConfigError(f"{key}: expected a mapping of the stage's settings, got {section!r}")
        config_cls = registry.get_config_class(name, registry.get_stage_class(name))
        stage_cfg = check_keys(config_cls, {k: v for k, v in (section or {}).items() if k != "output_dir"}, key)
        _check_values(cfg, stage_cfg, key)
        unlisted.append(name)
    return unlisted


def check_chat_templates(plan: Plan) -> None:
    """A stage that formats chats needs a chat template: the model's, the stage's
    ``chat_template``, or the ``default_chat_template`` fallback. Checked for local folders
    (hub models are checked when the driver loads the tokenizer)."""
    from fnsft.models.loading import local_has_chat_template

    cfg = plan.config
    if cfg.default_chat_template or cfg.model_name_or_path.startswith("builtin:"):
        return
    if local_has_chat_template(os.path.expanduser(cfg.model_name_or_path)) is not False:
        return
    for s in plan.selected:
        if not getattr(s.config, "chat_template", None) and s.stage.needs_chat_template():
            raise ConfigError(
                f"stage_configs.{s.name}.chat_template: the stage formats chats but the tokenizer of "
                f"{cfg.model_name_or_path} has no chat template and default_chat_template is null; set "
                "chat_template (a Jinja template or chatml) or default_chat_template: chatml")


def describe_plan(plan: Plan) -> str:
    """The human-readable plan printed by ``--dry_run``."""
    from fnsft.models.precision import describe_torch_dtype
    from fnsft.models.spec import describe_model

    cfg = plan.config
    lines = [
        "fnsft pipeline plan",
        f"  config:      {plan.config_path or '(in memory)'}",
        f"  model:       {describe_model(cfg.model_name_or_path)}",
        f"  torch_dtype: {describe_torch_dtype(cfg.torch_dtype, cfg.model_name_or_path)}",
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
            batching = s.stage.batching(_plan_gpu(res)) if hasattr(s.stage, "batching") else None
            if batching is not None:
                lines.append(f"         batching: {batching.describe()}")
    for name in plan.unlisted:
        lines.append(f"    -. {name} [not in stages: section checked, not run]")
    from fnsft.utils.redact import redact_text

    return redact_text("\n".join(lines))  # a base_url with user:password@, a pasted key: never printed


def _plan_gpu(res) -> bool:
    """Whether a stage will train on GPUs, as far as the plan can tell (``use_gpu: auto``: this
    machine's GPUs; on a cluster the stage decides from the cluster's)."""
    from fnsft.workers.hf.batching import gpu_present

    return res.use_gpu if res.use_gpu is not None else gpu_present()
