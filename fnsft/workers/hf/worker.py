"""The body of every training stage's Ray Train worker (SFT, DPO share it).

Each worker: load the incoming weights, build the stage's TRL trainer (with the generated
DeepSpeed dict), evaluate, train (resuming from Ray Train's last checkpoint after a worker
failure), evaluate again, then rank 0 merges LoRA adapters, puts the weights into the object
store (owned by the driver's HandoffStore) and writes plots. Stages differ only in the
trainer factory (``job.trainer_factory``, :mod:`fnsft.workers.hf.trainers`) that makes their trainer.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from typing import Any

from fnsft.workers.tracking import (hold_mlflow_run, log_stage_config_to_wandb, release_mlflow_run,
                                        release_wandb_run)
from fnsft.utils.console import quiet_libraries, say
from fnsft.workers.hand_back import keep_stage_adapter, mark_worker, save_and_hand_back
from fnsft.workers.hf.args import common_training_args
from fnsft.workers.progress import progress_callback

log = logging.getLogger("fnsft.worker")


def _report_callback():
    from transformers import TrainerCallback

    class RayCheckpoints(TrainerCallback):
        """Report each HF checkpoint to Ray Train, so a restarted worker group resumes from it."""

        def __init__(self):
            self.last_logs: dict[str, float] = {}

        def on_log(self, args, state, control, logs=None, **kw):
            self.last_logs.update({k: v for k, v in (logs or {}).items() if isinstance(v, (int, float))})

        def on_save(self, args, state, control, **kw):
            import ray.train

            path = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            metrics = {**self.last_logs, "step": state.global_step}
            # One checkpoint directory per step in Ray's storage (Train V2 otherwise names each
            # rank's upload by its own timestamp). On a node, local rank 0's folder already holds
            # every rank's files (HF/DeepSpeed write into one shared folder), so it alone uploads;
            # other nodes' local rank 0 add their ranks' shards to the same directory.
            if ray.train.get_context().get_local_rank() == 0:
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(path),
                                 checkpoint_dir_name=f"checkpoint-{state.global_step:06d}")
            else:
                ray.train.report(metrics)

    return RayCheckpoints()


def _eval_before_callback(trainer, metrics: dict):
    from transformers import TrainerCallback

    class EvalBeforeTraining(TrainerCallback):
        """Evaluate once the DeepSpeed engine exists (HF cannot evaluate ZeRO-2 before that)."""

        def on_train_begin(self, args, state, control, **kw):
            if not metrics.get("before_eval_loss"):
                metrics.update(trainer.evaluate(metric_key_prefix="before_eval"))

    return EvalBeforeTraining()


def train_worker(config: dict) -> None:
    """Ray Train ``train_loop_per_worker`` for HF/TRL-based stages."""
    import ray
    import ray.train
    import torch
    from datasets import Dataset

    from fnsft.workers.finite_guard import NonFiniteLoss, guard_trainer, record_failure, recorded_failure
    from fnsft.compat.trl import compact_lm_head_on_cpu
    from fnsft.workers.resume import (FinishedAtCheckpoint, finished_run_metrics, hf_checkpoint_step,
                                         restored_checkpoint, stop_if_finished)
    from fnsft.workers.stats import gather_peak_rss, gather_worker_nodes, throughput_meter, zero3_init, zero3_load_stats
    from fnsft.models.loading import load_for_training, load_tokenizer, lora_config
    from fnsft.models.precision import resolve_precision

    from fnsft.workers.startup_marks import Marks, import_worker_libraries, marks_callback

    job = config["job"]
    c = job.stage_config
    marks = config.get("_marks") or Marks()
    quiet_libraries()
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    torch.manual_seed(c.seed)
    failed = recorded_failure(job.store, job.key)
    if failed:  # a restarted worker group: the loss went NaN before; retraining would repeat it
        raise NonFiniteLoss(failed)
    precision = resolve_precision(job.torch_dtype, job.use_gpu, job.model)
    dtype = precision.compute_dtype
    out_dir = os.path.join(c.output_dir, "trainer")
    scratch = os.path.join(c.output_dir, ".scratch")
    os.makedirs(out_dir, exist_ok=True)
    mark_worker(c.output_dir, rank)
    import_worker_libraries(job)
    compacts = compact_lm_head_on_cpu()  # TRL's LM head skips prompt and padding positions on CPU too
    marks("worker_imports")

    tokenizer = load_tokenizer(job.model.source, job.model.trust_remote_code,
                               getattr(c, "chat_template", None))
    args = common_training_args(job, out_dir, precision)
    zero3 = zero3_init(job, args)  # kept alive: from_pretrained/from_config partition as they build
    model = load_for_training(job.model, c, precision, scratch)
    marks("model_load")
    load_stats = zero3_load_stats(model) if zero3 is not None else {}
    stream_counts = None
    if job.stream is not None:  # this worker's Ray Train shard, read as training goes (fnsft.workers.hf.stream)
        from fnsft.workers.hf.stream import StreamCounts, stream_train_dataset

        stream_counts = StreamCounts()
        train_ds = stream_train_dataset(job.stream.columns, ctx.get_world_size(), stream_counts,
                                        job.stream.skip_actor)
    else:
        train_ds = Dataset.from_list(ray.get(job.data["train"]))
    eval_ds = Dataset.from_list(ray.get(job.data["eval"])) if "eval" in job.data else None
    peft_config = lora_config(c) if c.use_peft else None
    marks("dataset")

    # transformers 5 reads the TensorBoard folder from the environment.
    os.environ["TENSORBOARD_LOGGING_DIR"] = os.path.join(c.output_dir, "tensorboard")
    batching = job.batching  # fnsft.workers.hf.batching, chosen by the stage
    if batching is not None:
        args.update(batching.trainer_args())
        if batching.attn_implementation:  # padding-free on a GPU: FlashAttention's varlen kernel
            model.set_attn_implementation(batching.attn_implementation)
    trainer = job.trainer_factory(job=job, model=model, tokenizer=tokenizer, train_dataset=train_ds,
                    eval_dataset=eval_ds, args=args, peft_config=peft_config)
    marks("trainer_init")
    trainer.add_callback(marks_callback(marks))  # before the eval-before-training callback
    del zero3  # the trainer's own TrainingArguments hold the DeepSpeed config from here
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # raw metric dicts; our progress lines replace them
    metrics: dict[str, Any] = dict(load_stats)
    trainer.add_callback(throughput_meter(metrics))
    trainer.add_callback(_report_callback())
    trainer.add_callback(progress_callback(job, rank))
    guard_trainer(trainer, job.stage_name, precision)
    hold_mlflow_run(trainer)  # report_to mlflow: the final evaluation lands in the stage's run
    log_stage_config_to_wandb(trainer, job.stage_name, dataclasses.asdict(c))

    metrics["torch_threads"] = torch.get_num_threads()  # the worker's CPU share (fnsft.runtime.placement)
    metrics["compute_dtype"], metrics["compute_dtype_reason"] = precision.compute, precision.reason
    metrics["lm_head_positions"] = "labelled" if compacts else "trl default"
    # A restarted worker group, or a rerun after a driver crash, continues from the newest
    # complete checkpoint, read in place by every rank (no copy, no race between ranks).
    with restored_checkpoint() as resume:
        if resume:
            metrics["resumed_from_step"] = hf_checkpoint_step(resume)
            if rank == 0:
                say(f"[{job.stage_name}] resuming from checkpoint {resume} (step {metrics['resumed_from_step']})")
        if eval_ds is not None and c.eval_before_training and not resume:
            trainer.add_callback(_eval_before_callback(trainer, metrics))
        if resume:  # first among the train-begin callbacks: a finished run trains nothing more
            trainer.callback_handler.callbacks.insert(0, stop_if_finished())
        if stream_counts is not None:  # the trainer is built: from here the stream reads the Ray shard
            from fnsft.workers.hf.stream import resume_stream, stream_checkpoint_callback

            if resume:  # the rows trained on before the restart leave this epoch (mid-epoch resume)
                resume_stream(stream_counts, resume, job.stream.skip_actor, rank)
            # first among the callbacks: each checkpoint holds its rows before it is reported to Ray Train
            trainer.callback_handler.callbacks.insert(0, stream_checkpoint_callback(stream_counts, rank))
            stream_counts.reading = True
        t0 = time.time()
        try:
            result = trainer.train(resume_from_checkpoint=resume).metrics
        except NonFiniteLoss as e:
            record_failure(job, str(e))
            raise
        except FinishedAtCheckpoint:
            result = finished_run_metrics(trainer)
        train_seconds = time.time() - t0
    metrics.update({k: v for k, v in result.items() if isinstance(v, (int, float))})
    if eval_ds is not None:
        try:
            metrics.update(trainer.evaluate())
        except NonFiniteLoss as e:
            record_failure(job, str(e))
            raise
    if "eval_loss" in metrics:
        metrics["eval_perplexity"] = float(torch.exp(torch.tensor(min(metrics["eval_loss"], 50.0))))
    if "before_eval_loss" in metrics:
        metrics["before_eval_perplexity"] = float(torch.exp(torch.tensor(min(metrics["before_eval_loss"], 50.0))))
    metrics["train_seconds"] = train_seconds
    metrics["global_step"] = trainer.state.global_step
    if stream_counts is not None:  # what the tokenization pass counted, summed over the ranks' shards
        from fnsft.workers.hf.stream import gather_stream_counts

        metrics.update(gather_stream_counts(stream_counts))
    metrics["worker_peak_rss_mb"] = gather_peak_rss()  # every rank, in rank order
    metrics["worker_peak_rss_mb_max"] = max(metrics["worker_peak_rss_mb"])
    metrics["placement"] = {"workers": gather_worker_nodes()}  # every rank's node, in rank order

    final_dir = os.path.join(scratch, "trained")
    trainer.save_model(final_dir)  # every rank: ZeRO-3 gathers the partitions here
    release_mlflow_run()
    release_wandb_run()
    if rank == 0:
        _hand_back(job, trainer, final_dir, metrics, dtype, marks.points)
    ray.train.report({"done": 1.0})


def _hand_back(job, trainer, final_dir: str, metrics: dict, dtype, marks=()) -> None:
    from fnsft.utils.plots import plot_log_history

    c = job.stage_config
    # The collectives are over: build plain (unpartitioned) models from here on. While the HF
    # DeepSpeed config is registered, from_pretrained would start a ZeRO-3 partitioned init and
    # wait for the other ranks forever.
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    model = _merged_model(job, final_dir, dtype)
    from fnsft.workers.finite_guard import check_weights

    check_weights(job, model)  # never hand a NaN model on
    history = trainer.state.log_history
    artifacts = {}
    with open(os.path.join(c.output_dir, "log_history.json"), "w") as f:
        json.dump(history, f, indent=1)
    artifacts["log_history"] = os.path.join(c.output_dir, "log_history.json")
    png = plot_log_history(history, os.path.join(c.output_dir, "training_curves.png"), job.stage_name)
    if png:
        artifacts["training_curves"] = png
    adapter = keep_stage_adapter(job, final_dir, trainer.processing_class) if c.use_peft else None
    save_and_hand_back(job, model, trainer.processing_class, metrics, artifacts, adapter, marks)
    shutil.rmtree(os.path.join(c.output_dir, ".scratch"), ignore_errors=True)


def _merged_model(job, final_dir: str, dtype):
    """Full weights for the next stage, in the compute dtype: LoRA adapters merged into the
    (unquantized) base in float32 first, so small adapter deltas are not rounded away twice."""
    if not job.stage_config.use_peft:
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(final_dir, dtype=dtype)
    import torch

    from fnsft.models.adapters import merge_adapter

    return merge_adapter(job.model.load(dtype=torch.float32), final_dir, dtype)
