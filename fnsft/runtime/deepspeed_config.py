"""Generate the DeepSpeed config a training stage passes to its HF/TRL trainer."""

from __future__ import annotations

import json
import os
from typing import Any, Optional

from fnsft.errors import ConfigError


def check_deepspeed(ds, key: str, stage=None) -> None:
    """One line for a ``deepspeed`` section that cannot work; with ``stage`` (a training stage's
    config), also for a ``config_file`` whose values contradict the stage's settings."""
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
        _check_file_agrees(data, ds, key, stage)


# DeepSpeed config keys the stage sets itself (HF fills "auto" from them): a file may leave them
# "auto" or give the same value, never another one.
_STAGE_KEYS = (("train_micro_batch_size_per_gpu", "per_device_train_batch_size"),
               ("gradient_accumulation_steps", "gradient_accumulation_steps"),
               ("gradient_clipping", "max_grad_norm"))


def _check_file_agrees(data: dict, ds, key: str, stage) -> None:
    """The file's ZeRO stage is the one the stage's limits were checked against (``zero_stage``),
    and the batch settings HF fills in are not overridden behind the stage's back."""
    zero = data.get("zero_optimization")
    if zero is not None and not isinstance(zero, dict):
        raise ConfigError(f"{ds.config_file}: zero_optimization must be a JSON object")
    file_stage = (zero or {}).get("stage")
    if file_stage is not None and file_stage != ds.zero_stage:
        raise ConfigError(f"{key}.deepspeed.config_file: {ds.config_file} sets zero_optimization.stage "
                          f"{file_stage!r} but {key}.deepspeed.zero_stage is {ds.zero_stage}; make them agree "
                          f"(zero_stage: {file_stage}), so the stage's ZeRO limits are checked against it")
    if stage is None:
        return
    for ds_key, name in _STAGE_KEYS:
        value = data.get(ds_key, "auto")
        if value != "auto" and value != getattr(stage, name, value):
            raise ConfigError(f"{key}.deepspeed.config_file: {ds.config_file} sets {ds_key} {value!r} but "
                              f"{key}.{name} is {getattr(stage, name)!r}; use \"auto\" there (fnsft fills it "
                              f"from {name}) or the same value")


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def deepspeed_in_use(ds, num_workers: int) -> bool:
    """Whether a stage trains under DeepSpeed.

    ZeRO partitions optimizer state, gradients and parameters *across* workers. On one worker
    with nothing offloaded it partitions nothing and only adds copies (flat buffers, gradient
    buckets), so there the stage trains in plain torch unless ``on_single_worker``, an offload
    option or your own ``config_file`` asks for DeepSpeed.
    """
    if not ds.enabled:
        return False
    return (num_workers > 1 or ds.on_single_worker or ds.offload_optimizer or ds.offload_param
            or bool(ds.config_file))


def describe_deepspeed(ds, num_workers: int) -> str:
    """One line for the plan and logs."""
    if not ds.enabled:
        return "off" + (" (DDP)" if num_workers > 1 else "")
    if not deepspeed_in_use(ds, num_workers):
        return (f"off: 1 worker, ZeRO-{ds.zero_stage} would partition nothing (plain torch; "
                "deepspeed.on_single_worker: true to use it anyway)")
    return (f"ZeRO-{ds.zero_stage}" + (" + optimizer offload" if ds.offload_optimizer else "")
            + (" + param offload" if ds.offload_param else "") + (f" + {ds.config_file}" if ds.config_file else ""))


def build_deepspeed_config(ds, use_gpu: bool, num_workers: int) -> Optional[dict[str, Any]]:
    """A DeepSpeed dict with "auto" values that the HF integration fills from TrainingArguments.

    ``None`` when the stage does not use DeepSpeed (see :func:`deepspeed_in_use`).
    """
    if not deepspeed_in_use(ds, num_workers):
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
