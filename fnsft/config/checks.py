"""Value checks that need more than a type: names HF accepts, positive resources, writable folders.

Each raises a one-line :class:`ConfigError` naming the key and what would be accepted. They run
in validation (before Ray, and in ``--dry_run``) and import nothing heavy: the accepted names
are copied from transformers 5.x (``OptimizerNames``, ``SchedulerType``, the reporting
integrations); ``tests/reliability/test_bad_configs.py`` checks the copies against transformers.
"""

from __future__ import annotations

import os
from typing import Any

from fnsft.config.parse import did_you_mean
from fnsft.errors import ConfigError

OPTIMIZERS = (
    "adamw_torch", "adamw_torch_fused", "adamw_torch_xla", "adamw_torch_npu_fused", "adafactor",
    "adamw_anyprecision", "adamw_torch_4bit", "adamw_torch_8bit", "ademamix", "sgd", "adagrad",
    "adamw_bnb_8bit", "adamw_8bit", "ademamix_8bit", "lion_8bit", "lion_32bit", "paged_adamw_32bit",
    "paged_adamw_8bit", "paged_ademamix_32bit", "paged_ademamix_8bit", "paged_lion_32bit",
    "paged_lion_8bit", "rmsprop", "rmsprop_bnb", "rmsprop_bnb_8bit", "rmsprop_bnb_32bit",
    "galore_adamw", "galore_adamw_8bit", "galore_adafactor", "galore_adamw_layerwise",
    "galore_adamw_8bit_layerwise", "galore_adafactor_layerwise", "lomo", "adalomo", "grokadamw",
    "schedule_free_radam", "schedule_free_adamw", "schedule_free_sgd", "apollo_adamw",
    "apollo_adamw_layerwise", "stable_adamw",
)
SCHEDULERS = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
    "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr",
    "warmup_stable_decay", "greedy",
)


def _choice(value: str, accepted: tuple, key: str, what: str) -> None:
    if value not in accepted:
        shown = ", ".join(accepted) if len(accepted) <= 16 else ", ".join(accepted[:12]) + ", ..."
        raise ConfigError(f"{key}: {value!r} is not a {what}{did_you_mean(value, accepted)} (accepted: {shown})")


def check_stage_values(cfg: Any, key: str) -> None:
    """HF names and step counts of a stage config (only the fields the config has)."""
    if hasattr(cfg, "optim"):
        _choice(cfg.optim, OPTIMIZERS, f"{key}.optim", "transformers optimizer")
    if hasattr(cfg, "lr_scheduler_type"):
        _choice(cfg.lr_scheduler_type, SCHEDULERS, f"{key}.lr_scheduler_type", "transformers scheduler")
    # RL counts iterations (num_iterations), not epochs.
    if hasattr(cfg, "num_train_epochs") and hasattr(cfg, "max_steps") and not hasattr(cfg, "num_iterations"):
        if cfg.max_steps <= 0 and cfg.num_train_epochs <= 0:
            raise ConfigError(f"{key}.num_train_epochs: {cfg.num_train_epochs:g} trains nothing; set it > 0 "
                              "or set max_steps > 0")


def check_resources(res: Any, key: str) -> None:
    """``resources`` numbers that can never be placed."""
    if res.num_workers < 1:
        raise ConfigError(f"{key}.num_workers: must be >= 1 (got {res.num_workers})")
    if res.cpus_per_worker is not None and res.cpus_per_worker <= 0:
        raise ConfigError(f"{key}.cpus_per_worker: must be > 0, e.g. 1 (got {res.cpus_per_worker:g})")
    if res.gpus_per_worker <= 0:
        raise ConfigError(f"{key}.gpus_per_worker: must be > 0, e.g. 1 or 0.5 (got {res.gpus_per_worker:g}); "
                          "use_gpu: false trains on CPUs")


def check_output_dir(path: str, key: str = "output_dir") -> None:
    """``output_dir`` is a folder, or can be created as one, and can be written."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"{key}: {path} is a file; give a folder (it is created if missing)")
    parent = path
    while not os.path.exists(parent):
        up = os.path.dirname(parent)
        if up == parent:
            break
        parent = up
    if not os.path.isdir(parent):
        raise ConfigError(f"{key}: {path} cannot be created: {parent} is a file; give a folder path")
    if not _writable(parent):
        raise ConfigError(f"{key}: {path} cannot be written ({parent} is not writable); give a writable folder")


def _writable(folder: str) -> bool:
    """Create and remove an empty probe folder: permission bits say nothing for root, and
    read-only or pseudo file systems (/proc) only show themselves on a real attempt."""
    import tempfile

    try:
        os.rmdir(tempfile.mkdtemp(dir=folder, prefix=".fnsft_write_probe_"))
        return True
    except OSError:
        return False
