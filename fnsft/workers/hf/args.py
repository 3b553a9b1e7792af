"""The HF ``TrainingArguments`` fields every HF/TRL trainer of a stage shares (SFT, DPO, reward model).

Each trainer factory (:mod:`fnsft.workers.hf.trainers`, :mod:`fnsft.workers.hf.reward_trainer`)
passes them into its TRL config, beside its own fields.
"""

from __future__ import annotations

from typing import Any


def common_training_args(job, out_dir: str, precision) -> dict[str, Any]:
    """TrainingArguments shared by TRL's configs (same names as HF); ``precision`` (a
    :class:`~fnsft.models.precision.Precision` or torch dtype) sets ``bf16``/``fp16`` autocast."""
    from fnsft.models.precision import Precision

    if not isinstance(precision, Precision):  # a torch dtype
        precision = Precision(str(precision).replace("torch.", ""), job.use_gpu)
    c = job.stage_config
    bf16, fp16 = precision.bf16, precision.fp16
    has_eval = "eval" in job.data
    stream = getattr(job, "stream", None)  # a TrainJob's StreamPlan; other callers' jobs have none
    args = dict(
        output_dir=out_dir,
        learning_rate=c.learning_rate,
        num_train_epochs=c.num_train_epochs,
        # A stream has no length: its epochs were turned into steps on the driver (StreamPlan).
        max_steps=stream.max_steps if stream is not None else c.max_steps,
        # A resumed stream leaves out the rows it trained on (fnsft.data.stream_skip); HF skipping its
        # count of batches as well would drop rows never trained on.
        ignore_data_skip=stream is not None,
        per_device_train_batch_size=c.per_device_train_batch_size,
        per_device_eval_batch_size=c.per_device_eval_batch_size,
        gradient_accumulation_steps=c.gradient_accumulation_steps,
        warmup_steps=c.warmup_steps,
        lr_scheduler_type=c.lr_scheduler_type,
        weight_decay=c.weight_decay,
        max_grad_norm=c.max_grad_norm,
        optim=c.optim,
        # Always said: TRL's configs default it to True, which recomputes every forward (~1.3x slower) unasked.
        gradient_checkpointing=c.gradient_checkpointing,
        logging_steps=c.logging_steps,
        report_to=[r for r in c.report_to if r != "none"] or "none",
        save_strategy="steps" if c.save_steps > 0 else "no",
        save_steps=max(c.save_steps, 1),
        save_total_limit=2,
        eval_strategy="steps" if has_eval and c.eval_steps else "no",
        eval_steps=c.eval_steps or None,
        seed=c.seed,
        # TRL defaults bf16=True even on CPU (emulated, ~15x slower, where the CPU lacks AMX-BF16): decide here.
        bf16=bf16,
        fp16=fp16,
        use_cpu=not job.use_gpu,
        deepspeed=job.deepspeed,
        disable_tqdm=True,  # our Ray progress bar replaces the per-worker bars
        dataloader_pin_memory=job.use_gpu,
        include_num_input_tokens_seen="non_padding",
        ddp_find_unused_parameters=False,
        save_only_model=False,
        logging_nan_inf_filter=False,  # a NaN loss must show (and stop the stage), not be averaged away
    )
    return args
