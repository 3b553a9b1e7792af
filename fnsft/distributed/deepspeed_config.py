"""Generate the DeepSpeed config a training stage passes to its HF/TRL trainer."""

from __future__ import annotations

import json
import os
from typing import Any, Optional

from fnsft.errors import ConfigError


def check_deepspeed(ds, key: str) -> None:
    if ds.offload_param and ds.zero_stage != 3:
        raise ConfigError(f"{key}.deepspeed.offload_param: parameter offload needs zero_stage: 3 (got {ds.zero_stage})")
    if ds.config_file:
        if not os.path.isfile(ds.config_file):
            raise ConfigError(f"{key}.deepspeed.config_file: {ds.config_file} not found")
        try:
            with open(ds.config_file) as f:
                data = json.load(f)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{ds.config_file}:{e.lineno}: invalid JSON: {e.msg}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{ds.config_file}: a DeepSpeed config must be a JSON object")


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def build_deepspeed_config(ds, use_gpu: bool) -> Optional[dict[str, Any]]:
    """A DeepSpeed dict with "auto" values that the HF integration fills from TrainingArguments."""
    if not ds.enabled:
        return None
    zero: dict[str, Any] = {"stage": ds.zero_stage}
    if ds.zero_stage >= 2:
        zero.update(overlap_comm=use_gpu, contiguous_gradients=True)
    if ds.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": use_gpu}
    if ds.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
        if ds.offload_param:
            zero["offload_param"] = {"device": "cpu", "pin_memory": use_gpu}
    config = {
        "zero_optimization": zero,
        "train_micro_batch_size_per_gpu": "auto",
        "train_batch_size": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,  # our own progress bar reports
        "wall_clock_breakdown": False,
    }
    if ds.config_file:
        with open(ds.config_file) as f:
            config = _merge(config, json.load(f))
    return config
