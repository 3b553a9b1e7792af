"""What every Ray Train + DeepSpeed training stage shares: its config fields and launch.

``TrainStageConfig`` holds the settings whose names come from HF ``TrainingArguments`` and
TRL/PEFT (``learning_rate``, ``num_train_epochs``, ``lora_r``...). ``TrainStage.launch`` starts
every Train job of every stage (SFT, DPO, CoT distillation, RL, the RLAIF reward model).
``TrainStage.execute`` prepares the data on the driver and launches one job with
:func:`fnsft.workers.hf.worker.train_worker`, and returns the trained model's handle.
Subclasses provide ``prepare_data`` and a ``trainer`` (a :class:`~fnsft.workers.hf.trainers.TrainerKind`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional

from fnsft.data.splits import DEFAULT_EVAL_MAX_ROWS
from fnsft.errors import ConfigError
from fnsft.stages.base import BaseStage, StageConfig, StageContext, StageResult
from fnsft.workers.hf.trainers import TrainerKind

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
    optim: str = field(default="adamw_torch_fused", metadata={"help": "HF optimizer name (HF's default)."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Trade compute for memory."})
    save_steps: int = field(
        default=100, metadata={"help": "Checkpoint every N steps (a failed worker resumes from it; 0: never)."})
    eval_split: float = field(
        default=0.1, metadata={"help": "Share of the data held out for evaluation (0: none)."})
    eval_dataset_path: Optional[str] = field(
        default=None, metadata={"help": "A separate eval file (instead of eval_split)."})
    eval_max_rows: Optional[int] = field(
        default=DEFAULT_EVAL_MAX_ROWS,
        metadata={"help": "At most this many rows are evaluated (the eval_split share or the eval file's first "
                          "rows), before and after training, so the time to the first step does not grow with "
                          "the data; null: no cap."})
    eval_steps: Optional[int] = field(default=None, metadata={"help": "Evaluate every N steps (default: at the end)."})
    eval_before_training: bool = field(
        default=True, metadata={"help": "Evaluate once before training, so the summary shows the change."})
    skip_bad_rows: bool = field(
        default=False, metadata={"help": "Skip rows that cannot be read or converted (broken JSON, not UTF-8, a wrong "
                                         "type...) and count them in the summary; false: the first one stops the "
                                         "stage with one line naming its file and line."})
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


@dataclass(frozen=True)
class JobLayout:
    """Where a stage's Train job runs, decided before the driver prepares anything else."""

    resources: Any  # fnsft.config.resources.Resources, cpus_per_worker resolved on the live cluster
    deepspeed: Any  # the stage's DeepSpeed settings (fnsft.config.schema)
    use_gpu: bool
    started: float  # time.time() when the stage began preparing the job (driver_prepare_s counts from it)


class TrainStage(BaseStage):
    """Base of the Ray Train stages. Subclasses set ``trainer`` and implement ``prepare_data``.

    Every Train job goes through :meth:`launch`: resources resolved and checked on the live
    cluster (:meth:`layout`, :meth:`place`), the DeepSpeed dict, the hand-off store, and a Train
    run named from the stage's fingerprint, so a rerun after a driver crash continues from its
    newest checkpoint.
    """

    # The HF/TRL trainer the stage's workers build (fnsft.workers.hf.trainers); None for stages
    # whose workers train otherwise (RL), where padding_free/train_sampling_strategy do not apply.
    trainer: Optional[TrainerKind] = None

    @property
    def key(self) -> str:
        return f"stage_configs.{self.stage_name}"

    def validate_config(self) -> None:
        from fnsft.runtime.deepspeed_config import check_deepspeed, deepspeed_in_use
        from fnsft.models.loading import check_peft_options

        c = self.config
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            if getattr(c, name) < 1:
                raise ConfigError(f"{self.key}.{name}: must be >= 1 (got {getattr(c, name)})")
        if c.learning_rate <= 0:
            raise ConfigError(f"{self.key}.learning_rate: must be > 0 (got {c.learning_rate})")
        if not 0 <= c.eval_split < 1:
            raise ConfigError(f"{self.key}.eval_split: must be in [0, 1) (got {c.eval_split})")
        if c.eval_max_rows is not None and c.eval_max_rows < 1:
            raise ConfigError(f"{self.key}.eval_max_rows: must be >= 1, or null for no cap (got {c.eval_max_rows})")
        if c.eval_dataset_path and not os.path.exists(c.eval_dataset_path):
            raise ConfigError(f"{self.key}.eval_dataset_path: {c.eval_dataset_path} not found")
        res, ds = self.resources()
        check_deepspeed(ds, self.key, c)
        supports = self.supports_padding_free()
        if supports is not None:
            from fnsft.workers.hf.batching import check_batching

            check_batching(c, self.key, supports)
        check_peft_options(c, ds.zero_stage, deepspeed_in_use(ds, res.num_workers), self.key)

    # Set by a stage whose padded batches should keep HF's random order rather than be grouped by
    # length (the reason is shown in the plan): see CoTDistillationStage.
    random_order_reason: Optional[str] = None

    def supports_padding_free(self) -> Optional[bool]:
        """Whether the stage's TRL trainer can train padding-free (None: not an HF/TRL trainer,
        so ``padding_free``/``train_sampling_strategy`` do not apply)."""
        return None if self.trainer is None else self.trainer.padding_free

    def batching(self, on_gpu: bool):
        """How the stage batches (:mod:`fnsft.workers.hf.batching`); None for non-TRL stages."""
        from fnsft.workers.hf.batching import stage_batching

        supports = self.supports_padding_free()
        return None if supports is None else stage_batching(self.config, on_gpu, supports,
                                                            random_order_reason=self.random_order_reason)

    def resources(self):
        from fnsft.config.schema import PipelineConfig
        from fnsft.config.resources import effective_resources

        return effective_resources(self.pipeline_config or PipelineConfig(), self.config, self.key)

    def role_bundles(self) -> list[dict[str, float]]:
        """Resources of the actors the stage starts beside its Train workers (none here)."""
        return []

    def demand(self, cap, use_gpu: bool = False):
        """What this stage asks of ``cap`` (a :class:`~fnsft.runtime.placement.Capacity`),
        with ``cpus_per_worker: null`` resolved to the machine's share."""
        from fnsft.runtime.placement import Demand, auto_cpus_per_worker

        res, _ = self.resources()
        roles = self.role_bundles()
        cpus = res.cpus_per_worker
        if cpus is None:
            cpus = auto_cpus_per_worker(res.num_workers, cap, sum(b.get("CPU", 0.0) for b in roles))
        worker = {"CPU": float(cpus), **({"GPU": float(res.gpus_per_worker)} if use_gpu else {})}
        return Demand(f"stage {self.stage_name}", res.num_workers, worker, roles, res.placement_strategy)

    def place(self, res, use_gpu: bool):
        """``res`` with ``cpus_per_worker`` resolved on the live cluster; raises a one-line
        ``StageError`` when the stage can never be placed there (instead of waiting forever)."""
        from fnsft.runtime.placement import cluster_capacity, free_resources, problem, torch_threads
        from fnsft.errors import StageError

        cap = cluster_capacity()
        demand = self.demand(cap, use_gpu)
        why = problem(demand, cap)
        if why:
            raise StageError(f"{self.key}.resources: {why}; lower resources.num_workers/cpus_per_worker"
                             + ("/gpus_per_worker" if use_gpu else "")
                             + (" or the role actors' num_cpus" if demand.roles else "")
                             + ", or give Ray more (ray.num_cpus, a larger cluster)")
        free = free_resources()
        busy = {k: v for k, v in demand.total().items() if v > free.get(k, 0.0) + 1e-9}
        if busy:
            log.info("[%s] waiting for %s: %s free now (other jobs hold the rest)", self.stage_name,
                     demand.describe(), ", ".join(f"{free.get(k, 0.0):g} {k}" for k in busy))
        cpus = demand.worker["CPU"]
        auto = res.cpus_per_worker is None
        where = "this machine" if cap.driver_node or cap.source == "this machine" else "a node"
        log.info("[%s] %d worker(s) x %g CPU%s, %d torch thread(s) each", self.stage_name, res.num_workers, cpus,
                 f" (auto: {where}'s CPUs split between the workers)" if auto else "", torch_threads(cpus))
        return dataclasses.replace(res, cpus_per_worker=cpus)

    def train_storage(self) -> str:
        """Where Ray Train keeps this stage's checkpoints (``ray.storage_path`` or <output_dir>/ray_train)."""
        ray_cfg = getattr(self.pipeline_config, "ray", None)
        if ray_cfg and ray_cfg.storage_path:
            return ray_cfg.storage_path
        return os.path.join(os.path.dirname(self.config.output_dir), "ray_train")

    def layout(self) -> JobLayout:
        """The stage's resources and GPU use, placed on the live cluster (:meth:`place`)."""
        from fnsft.runtime.ray_start import cluster_has_gpus

        started = time.time()
        res, ds = self.resources()
        use_gpu = res.use_gpu if res.use_gpu is not None else cluster_has_gpus()
        return JobLayout(self.place(res, use_gpu), ds, use_gpu, started)

    def resume_fingerprint(self, model, context: Optional[StageContext]) -> str:
        """The pipeline's fingerprint of this stage; for a stage executed on its own, one computed
        from its config and the input model."""
        if context is not None and context.fingerprint:
            return context.fingerprint
        return _fingerprint(self.stage_name, self.fingerprint_fields(), getattr(model, "fingerprint", None))

    def launch(self, model, worker_fn: Callable[[dict], None], data: dict[str, Any], *,
               context: Optional[StageContext] = None, layout: Optional[JobLayout] = None,
               resume: bool = True, use_deepspeed: bool = True, trainer_factory: Optional[Callable] = None,
               batching=None, roles=None, save_dir: Optional[str] = None, stage_config=None,
               job_name: Optional[str] = None, stream=None) -> dict:
        """Run one Train job of this stage: ``worker_fn`` on every worker; returns rank 0's hand-back.

        ``data``: split name -> rows (put in the object store here). ``layout``: from
        :meth:`layout`, when the driver had work to do between placing and launching (default:
        placed now). ``resume``: the Train run is named from the stage's fingerprint
        (:meth:`resume_fingerprint`), the output folder and the worker layout, so a rerun of an
        interrupted stage resumes from its newest complete checkpoint (at most ``save_steps`` of
        work lost) and a changed stage starts anew; False: a fresh run every time.
        ``use_deepspeed``: False trains in plain torch whatever the settings (TRPO).
        ``stage_config``/``job_name``: a job with settings of its own (the RLAIF reward model).
        ``stream``: a :class:`~fnsft.data.ingest.StreamInput` whose Ray Datasets Ray Train splits
        between the workers (``data`` then holds only the held-out rows).
        The other arguments become the :class:`~fnsft.runtime.train_job.TrainJob`'s fields.
        """
        import ray

        from fnsft.runtime.deepspeed_config import build_deepspeed_config
        from fnsft.runtime.handoff import get_handoff_store
        from fnsft.runtime.train_job import TrainJob, run_name_for, run_train_job

        layout = layout or self.layout()
        res = layout.resources
        deepspeed = build_deepspeed_config(layout.deepspeed, layout.use_gpu, res.num_workers) if use_deepspeed else None
        job = TrainJob(
            stage_name=job_name or self.stage_name, stage_config=stage_config or self.config, model=model,
            data={k: ray.put(v) for k, v in data.items()}, worker_fn=worker_fn, deepspeed=deepspeed,
            use_gpu=layout.use_gpu, torch_dtype=getattr(self.pipeline_config, "torch_dtype", "auto"),
            trainer_factory=trainer_factory, batching=batching, roles=roles, save_dir=save_dir,
            tty=sys.stdout.isatty(), store=get_handoff_store(), stream=stream.plan if stream else None)
        if resume:
            job.run_name = run_name_for(job.stage_name, self.resume_fingerprint(model, context),
                                        os.path.abspath(self.config.output_dir), res.num_workers, job.use_gpu,
                                        job.deepspeed)
        callbacks = [cb for make in (context.train_callbacks if context else ()) for cb in make(job.stage_name)]
        driver_s = time.time() - layout.started  # placement check, data read and put in the object store
        out = run_train_job(job, res, self.train_storage(), callbacks, datasets=stream.datasets if stream else None)
        out.setdefault("timings", {})["driver_prepare_s"] = round(driver_s, 3)
        return out

    # Subclass API ------------------------------------------------------------------------
    def prepare_stream(self, model, tokenizer, num_workers: int):
        """A :class:`~fnsft.data.ingest.StreamInput` when the stage streams its training rows
        through Ray Data (then :meth:`prepare_data` is not called); None: rows in memory."""
        return None

    def prepare_data(self, tokenizer) -> tuple[dict[str, list[dict]], dict[str, Any]]:
        """Rows per split ("train", optional "eval") and info for the metrics/log."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------
    def split_eval(self, rows: list[dict], eval_rows: Optional[list[dict]]) -> dict[str, list[dict]]:
        """``{"train": rows, "eval": held-out rows}`` (no "eval" when none): ``eval_rows`` (from
        ``eval_dataset_path``) or the ``eval_split`` share of ``rows``, at most ``eval_max_rows``
        of them (:mod:`fnsft.data.splits`); the log says how many are held out and why."""
        from fnsft.data.splits import cap_eval_rows, split_held_out

        c = self.config
        if c.max_train_samples:
            rows = rows[: c.max_train_samples]
        if eval_rows is not None:
            held = cap_eval_rows(eval_rows, c.eval_max_rows, c.eval_dataset_path or "the eval file")
            held = held._replace(train=rows)
        else:
            held = split_held_out(rows, c.eval_split, c.eval_max_rows, c.seed)
        log.info("[%s] eval: %s", self.stage_name, held.reason)
        return {"train": held.train, "eval": held.eval} if held.eval else {"train": held.train}

    def execute(self, model, tokenizer, previous_result: Optional[StageResult] = None, *,
                context: Optional[StageContext] = None) -> StageResult:
        from fnsft.runtime.deepspeed_config import deepspeed_in_use, describe_deepspeed
        from fnsft.workers.hf.worker import train_worker

        layout = self.layout()
        res, ds = layout.resources, layout.deepspeed
        stream = self.prepare_stream(model, tokenizer, res.num_workers)
        if stream is not None:  # the training rows stay on the cluster; only the held-out ones are here
            data, info = ({"eval": stream.eval_rows} if stream.eval_rows else {}), stream.info
        else:
            data, info = self.prepare_data(tokenizer)
        sizes = ", ".join([f"{k}: {len(v)} rows" for k, v in data.items()] + (["train: streamed"] if stream else []))
        log.info("[%s] data: %s; %d worker(s), %s, DeepSpeed %s", self.stage_name, sizes, res.num_workers,
                 "GPU" if layout.use_gpu else "CPU", describe_deepspeed(ds, res.num_workers))
        batching = self.batching(layout.use_gpu)
        if batching is not None:
            log.info("[%s] batching: %s", self.stage_name, batching.describe())
        try:
            out = self.launch(model, train_worker, data, context=context, layout=layout,
                              trainer_factory=self.trainer.build, batching=batching, stream=stream)
        finally:
            if stream is not None:
                stream.close()
        path = out.get("path")
        handle = model.with_weights(out["weights"][0], path=path, stage=self.stage_name,
                                    adapter=out.get("adapter_path"))
        if path:
            handle.source = path  # the saved folder has this model's config and tokenizer
        # How the stage trained, for the summary and the run report (RL reports its own).
        strategy = (f"deepspeed-zero{ds.zero_stage}" if deepspeed_in_use(ds, res.num_workers)
                    else "torch" + (" (DDP)" if res.num_workers > 1 else ""))
        metrics = {**info, "strategy": strategy, **out["metrics"]}
        if stream is not None and metrics.get("truncated_examples"):  # counted by the workers as the rows streamed
            log.warning("[%s] %d of %d streamed training examples were longer than max_length=%d and truncated",
                        self.stage_name, metrics["truncated_examples"], metrics.get("streamed_rows", 0),
                        self.config.max_length)
        if batching is not None:
            metrics["batching"] = batching.describe()
        log_throughput_and_memory(self.stage_name, metrics)
        return StageResult(model=handle, tokenizer=tokenizer, metrics=metrics,
                           artifacts=out.get("artifacts", {}), model_path=path, timings=out["timings"])


def log_throughput_and_memory(stage_name: str, metrics: dict) -> None:
    """Add the driver's peak RSS to ``metrics`` and log the stage's useful tokens/s and memory."""
    from fnsft.utils.memory import peak_rss_mb

    metrics["driver_peak_rss_mb"] = peak_rss_mb()  # the driver process's peak so far
    workers = "/".join(f"{m:.0f}" for m in metrics.get("worker_peak_rss_mb", []))
    if "useful_tokens_per_second" in metrics:
        log.info("[%s] %.1f useful (non-padding) tokens/s (%d tokens, %d steps); peak RSS: driver %.0f MiB, "
                 "worker(s) %s MiB", stage_name, metrics["useful_tokens_per_second"], metrics.get("useful_tokens", 0),
                 metrics.get("global_step", 0), metrics["driver_peak_rss_mb"], workers or "?")


def _fingerprint(*parts: Any) -> str:
    """The pipeline's stage fingerprint (fnsft.pipeline.manifest.fingerprint), for a stage run alone."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
