"""A stage's effective ``resources`` and ``deepspeed``: the pipeline's, with the stage's overrides.

YAML: top-level ``resources:`` / ``deepspeed:``, overridden per stage by
``stage_configs.<stage>.resources`` / ``.deepspeed``. Used by the plan (validation, ``--dry_run``)
and by the training stages when they launch their Train job.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fnsft.config.parse import parse_dataclass
from fnsft.config.schema import DeepSpeedConfig, PipelineConfig, ResourcesConfig


def effective_resources(global_cfg: PipelineConfig, stage_cfg: Any, key: str):
    """Global ``resources``/``deepspeed`` with the stage's overrides applied."""
    res = dataclasses.asdict(global_cfg.resources)
    ds = dataclasses.asdict(global_cfg.deepspeed)
    res.update(getattr(stage_cfg, "resources", None) or {})
    ds.update(getattr(stage_cfg, "deepspeed", None) or {})
    return (parse_dataclass(ResourcesConfig, res, f"{key}.resources"),
            parse_dataclass(DeepSpeedConfig, ds, f"{key}.deepspeed"))
