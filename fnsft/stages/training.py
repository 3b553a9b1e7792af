"""What every Ray Train + DeepSpeed training stage shares: its config fields and launch.

``TrainStageConfig`` holds the settings whose names come from HF ``TrainingArguments`` and
TRL/PEFT (``learning_rate``, ``num_train_epochs``, ``lora_r``...). ``TrainStage.execute`` prepares
the data on the driver, puts it in the object store, runs one ``TorchTrainer`` job with
:func:`fnsft.distributed.hf_worker.train_worker`, and returns the trained model's handle.
Subclasses provide ``prepare_data`` and a ``builder`` (the function making their TRL trainer).
"""

from __future__ import annotations

import logging
import os
import random
import sys
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from fnsft.errors import ConfigError
from fnsft.stages.base import BaseStage, StageConfig, StageResult

log = logging.getLogger("fnsft")


@dataclass(kw_only=True)
class TrainStageConfig(StageConfig):
    learning_rate: float = field(default=2e-4, metadata={"help": "Peak learning rate (AdamW)."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Epochs over the training data."})
    max_steps: int = field(default=-1, metadata={"help": "Optimizer steps; overrides num_train_epochs when > 0."})
    per_device_train_batch_size: int = field(default=4, metadata={"help": "Batch size per worker."})
    per_device_eval_batch_size: int = field(default=8, metadata={"help": "Eval batch size per worker."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per optimizer step."})
    warmup_steps: float = field(
        default=0, metadata={"help": "Linear warm-up: steps (>= 1) or a share of all steps (< 1)."})
    lr_scheduler_type: str = field(default="linear", metadata={"help": "HF scheduler name (linear, cosine, constant...)."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm."})
    optim: str = field(default="adamw_torch", metadata={"help": "HF optimizer name."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Trade compute for memory."})
    save_steps: int = field(
        default=100, metadata={"help": "Checkpoint every N steps (a failed worker resumes from it; 0: never)."})
    eval_split: float = field(
        default=0.1, metadata={"help": "Share of the data held out for evaluation (0: none)."})
    eval_dataset_path: Optional[str] = field(
        default=None, metadata={"help": "A separate eval file (instead of eval_split)."})
    eval_steps: Optional[int] = field(default=None, metadata={"help": "Evaluate every N steps (default: at the end)."})
    eval_before_training: bool = field(
        default=True, metadata={"help": "Evaluate once before training, so the summary shows the change."})
    max_train_samples: Optional[int] = field(default=None, metadata={"help": "Use at most N training rows."})
    use_peft: bool = field(default=False, metadata={"help": "Train LoRA adapters (PEFT) instead of all weights."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (scale = alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: Optional[list[str]] = field(
        default=None, metadata={"help": "Modules to adapt (default: all linear layers but the LM head)."})
    load_in_4bit: bool = field(default=False, metadata={"help": "QLoRA: load the base in 4-bit NF4 (bitsandbytes)."})
    load_in_8bit: bool = field(default=False, metadata={"help": "Load the base in 8-bit (bitsandbytes)."})
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = field(default="nf4", metadata={"help": "4-bit type."})
    chat_template: Optional[str] = field(
        default=None, metadata={"help": "Jinja chat template for models that have none (or to replace it)."})
    resources: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "Overrides of the top-level resources for this stage."})
    deepspeed: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "Overrides of the top-level deepspeed for this stage."})


class TrainStage(BaseStage):
    """Base of the Ray Train stages. Subclasses set ``builder`` and implement ``prepare_data``."""

    builder: str = ""

    @property
    def key(self) -> str:
        return f"stage_configs.{self.stage_name}"

    def validate_config(self) -> None:
        from fnsft.distributed.deepspeed_config import check_deepspeed, deepspeed_in_use
        from fnsft.models.loading import check_peft_options

        c = self.config
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            if getattr(c, name) < 1:
                raise ConfigError(f"{self.key}.{name}: must be >= 1 (got {getattr(c, name)})")
        if c.learning_rate <= 0:
            raise ConfigError(f"{self.key}.learning_rate: must be > 0 (got {c.learning_rate})")
        if not 0 <= c.eval_split < 1:
            raise ConfigError(f"{self.key}.eval_split: must be in [0, 1) (got {c.eval_split})")
        if c.eval_dataset_path and not os.path.exists(c.eval_dataset_path):
            raise ConfigError(f"{self.key}.eval_dataset_path: {c.eval_dataset_path} not found")
        res, ds = self.resources()
        check_deepspeed(ds, self.key)
        check_peft_options(c, ds.zero_stage, deepspeed_in_use(ds, res.num_workers), self.key)

    def resources(self):
        from fnsft.config.schema import PipelineConfig
        from fnsft.config.resources import effective_resources

        return effective_resources(self.pipeline_config or PipelineConfig(), self.config, self.key)

    # Subclass API ------------------------------------------------------------------------
    def prepare_data(self, tokenizer) -> tuple[dict[str, list[dict]], dict[str, Any]]:
        """Rows per split ("train", optional "eval") and info for the metrics/log."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------
    def split_eval(self, rows: list[dict], eval_rows: Optional[list[dict]]) -> dict[str, list[dict]]:
        c = self.config
        if c.max_train_samples:
            rows = rows[: c.max_train_samples]
        if eval_rows is not None:
            return {"train": rows, "eval": eval_rows}
        if c.eval_split <= 0 or len(rows) < 4:
            return {"train": rows}
        shuffled = rows[:]
        random.Random(c.seed).shuffle(shuffled)
        n_eval = max(1, int(round(len(rows) * c.eval_split)))
        return {"train": shuffled[n_eval:], "eval": shuffled[:n_eval]}

    def execute(self, model, tokenizer, previous_result: Optional[StageResult] = None) -> StageResult:
        import ray

        from fnsft.distributed.deepspeed_config import build_deepspeed_config, describe_deepspeed
        from fnsft.distributed.handoff import get_handoff_store
        from fnsft.distributed.hf_worker import train_worker
        from fnsft.distributed.ray_runtime import cluster_has_gpus
        from fnsft.distributed.train_job import TrainJob, run_train_job

        res, ds = self.resources()
        use_gpu = res.use_gpu if res.use_gpu is not None else cluster_has_gpus()
        data, info = self.prepare_data(tokenizer)
        sizes = ", ".join(f"{k}: {len(v)} rows" for k, v in data.items())
        log.info("[%s] data: %s; %d worker(s), %s, DeepSpeed %s", self.stage_name, sizes, res.num_workers,
                 "GPU" if use_gpu else "CPU", describe_deepspeed(ds, res.num_workers))
        pipeline_dtype = getattr(self.pipeline_config, "torch_dtype", "auto")
        job = TrainJob(
            stage_name=self.stage_name, stage_config=self.config, model=model,
            data={k: ray.put(v) for k, v in data.items()}, builder=self.builder,
            deepspeed=build_deepspeed_config(ds, use_gpu, res.num_workers), use_gpu=use_gpu,
            torch_dtype=pipeline_dtype, store=get_handoff_store(),
            extra={"tty": sys.stdout.isatty()},
        )
        ray_cfg = getattr(self.pipeline_config, "ray", None)
        storage = (ray_cfg.storage_path if ray_cfg and ray_cfg.storage_path
                   else os.path.join(os.path.dirname(self.config.output_dir), "ray_train"))
        out = run_train_job(job, train_worker, res, storage)
        path = out.get("path")
        handle = model.with_weights(out["weights"][0], path=path, stage=self.stage_name)
        if path:
            handle.source = path  # the saved folder has this model's config and tokenizer
        metrics = {**info, **out["metrics"]}
        return StageResult(model=handle, tokenizer=tokenizer, metrics=metrics,
                           artifacts=out.get("artifacts", {}), model_path=path, timings=out["timings"])
