"""The reward model's Ray Train worker (RLAIF ``mode: reward_model``; YAML ``rlaif.reward_model``).

Reads like the SFT/DPO worker (:func:`fnsft.workers.hf.worker.train_worker`, whose callbacks
and arguments (:mod:`fnsft.workers.hf.args`) it shares), with a sequence-classification model
instead of a causal LM:

1. load the reward model: ``reward_model.model_name_or_path``, or the stage's input policy with a
   new scalar head (``AutoModelForSequenceClassification``, ``num_labels=1``);
2. tokenize each pair exactly as the reward actor will score it
   (:func:`fnsft.actors.reward.encode_for_reward`), so training and serving see the same tokens;
3. rank 0 measures the held-back pairs' accuracy (chosen scored above rejected) of the untrained
   model; every rank trains with TRL's ``RewardTrainer`` (DeepSpeed dict as in SFT/DPO);
4. the model is saved to the stage's ``reward_model/`` folder (safetensors, with its tokenizer);
   rank 0 loads it back as the RL loop will (:class:`~fnsft.actors.reward.SequenceClassifierReward`)
   and measures the held-back accuracy again, then hands the metrics to the driver.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any

from fnsft.utils.console import say


def load_reward_model(job, rank: int, dtype):
    """``(model, tokenizer)``: the configured reward model start, or the input policy + a scalar head."""
    from transformers import AutoModelForSequenceClassification

    from fnsft.models.loading import load_tokenizer
    from fnsft.models.spec import resolve_model_path
    from fnsft.utils.console import quiet_libraries

    c = job.stage_config
    start = c.reward_model.model_name_or_path
    if start:
        path = resolve_model_path(start)
        tokenizer = load_tokenizer(path, job.model.trust_remote_code, c.chat_template)
    else:  # weights in the object store are written once per rank (no shared-folder race)
        path = job.model.materialize(os.path.join(c.output_dir, ".scratch", f"rank{rank}"))
        tokenizer = load_tokenizer(job.model.source, job.model.trust_remote_code, c.chat_template)
    quiet_libraries()  # "score.weight newly initialized" is the point here, not a warning
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=1, dtype=dtype, trust_remote_code=job.model.trust_remote_code)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def encode_pairs(tokenizer, rows: list[dict], apply_chat_template: bool) -> dict[str, list]:
    from fnsft.actors.reward import encode_for_reward

    prompts = [r["prompt"] for r in rows]
    return {"chosen_ids": encode_for_reward(tokenizer, prompts, [r["chosen"] for r in rows], apply_chat_template),
            "rejected_ids": encode_for_reward(tokenizer, prompts, [r["rejected"] for r in rows], apply_chat_template)}


def pair_accuracy(score, rows: list[dict]) -> float:
    """Share of pairs whose chosen completion scores strictly above the rejected one."""
    prompts = [r["prompt"] for r in rows]
    chosen = score(prompts, [r["chosen"] for r in rows])
    rejected = score(prompts, [r["rejected"] for r in rows])
    return sum(a > b for a, b in zip(chosen, rejected)) / max(len(rows), 1)


def _scorer(model, tokenizer, apply_chat_template: bool, batch_size: int = 16):
    """Score (prompt, completion) lists with an in-memory reward model (as the reward actor does)."""
    import torch

    from fnsft.models.tokens import pad_sequences
    from fnsft.actors.reward import encode_for_reward

    def score(prompts, completions) -> list[float]:
        ids = encode_for_reward(tokenizer, prompts, completions, apply_chat_template)
        out: list[float] = []
        model.eval()
        for start in range(0, len(ids), batch_size):
            padded, mask = pad_sequences(ids[start:start + batch_size], tokenizer.pad_token_id, "right")
            with torch.no_grad():
                logits = model(input_ids=torch.as_tensor(padded, device=model.device),
                               attention_mask=torch.as_tensor(mask, device=model.device)).logits
            out += logits[:, 0].float().tolist()
        return out

    return score


def build_reward_trainer(job, model, tokenizer, train_dataset, eval_dataset, args):
    """TRL's RewardTrainer for ``rlaif.reward_model`` (datasets already tokenized: ``chosen_ids``...)."""
    from trl import RewardConfig, RewardTrainer

    rm = job.stage_config.reward_model
    config = RewardConfig(**args, max_length=rm.max_length, center_rewards_coefficient=rm.center_rewards_coefficient,
                          prediction_loss_only=True)
    return RewardTrainer(model=model, args=config, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         processing_class=tokenizer)


def reward_model_worker(config: dict) -> None:
    """Ray Train ``train_loop_per_worker`` of the reward model (see the module docstring)."""
    import ray
    import ray.train
    import torch
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback

    from fnsft.workers.finite_guard import guard_trainer
    from fnsft.workers.hand_back import mark_worker
    from fnsft.workers.hf.args import common_training_args
    from fnsft.workers.progress import progress_callback
    from fnsft.models.precision import resolve_precision
    from fnsft.models.spec import resolve_model_path
    from fnsft.utils.console import quiet_libraries

    job = config["job"]
    c = job.stage_config
    quiet_libraries()
    rank = ray.train.get_context().get_world_rank()
    torch.manual_seed(c.seed)
    os.makedirs(c.output_dir, exist_ok=True)
    mark_worker(c.output_dir, rank)
    start = c.reward_model.model_name_or_path  # a model of its own: its own width decides ``auto``
    precision = resolve_precision(job.torch_dtype, job.use_gpu, resolve_model_path(start) if start else job.model)
    model, tokenizer = load_reward_model(job, rank, precision.load_dtype(trainable=True))
    use_template = c.apply_chat_template and bool(getattr(tokenizer, "chat_template", None))
    train_rows, held_rows = ray.get(job.data["train"]), ray.get(job.data["eval"])
    train_ds = Dataset.from_dict(encode_pairs(tokenizer, train_rows, use_template))
    eval_ds = Dataset.from_dict(encode_pairs(tokenizer, held_rows, use_template))
    metrics: dict[str, Any] = {}
    if rank == 0:
        metrics["before_heldout_accuracy"] = pair_accuracy(_scorer(model, tokenizer, use_template), held_rows)
    os.environ["TENSORBOARD_LOGGING_DIR"] = os.path.join(c.output_dir, "tensorboard")
    trainer = build_reward_trainer(job, model, tokenizer, train_ds, eval_ds,
                                   common_training_args(job, os.path.join(c.output_dir, "trainer"), precision))
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(progress_callback(job, rank))
    guard_trainer(trainer, job.stage_name, precision)
    t0 = time.time()
    result = trainer.train()
    metrics["train_seconds"] = time.time() - t0
    metrics["compute_dtype"], metrics["compute_dtype_reason"] = precision.compute, precision.reason
    metrics.update({k: v for k, v in result.metrics.items() if isinstance(v, (int, float))})
    metrics.update({k: v for k, v in trainer.evaluate().items() if isinstance(v, (int, float))})
    metrics["global_step"] = trainer.state.global_step
    save_dir = job.save_dir
    trainer.save_model(save_dir)  # every rank: ZeRO-3 gathers the partitions here
    if rank == 0:
        _hand_back(job, trainer, save_dir, held_rows, metrics)
    ray.train.report({"done": 1.0})


def _hand_back(job, trainer, save_dir: str, held_rows: list[dict], metrics: dict) -> None:
    """Rank 0: the saved reward model, scored on the held-back pairs as the RL loop will serve it."""
    import ray
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    from fnsft.actors.reward import SequenceClassifierReward

    c = job.stage_config
    unset_hf_deepspeed_config()  # plain (unpartitioned) loading from here on
    for name in ("training_args.bin",):  # a pickle: the folder holds safetensors and JSON only
        if os.path.exists(os.path.join(save_dir, name)):
            os.remove(os.path.join(save_dir, name))
    served = SequenceClassifierReward(save_dir, apply_chat_template=c.apply_chat_template)
    metrics["heldout_accuracy"] = pair_accuracy(served, held_rows)
    history_path = os.path.join(c.output_dir, "log_history.json")
    with open(history_path, "w") as f:
        json.dump(trainer.state.log_history, f, indent=1)
    shutil.rmtree(os.path.join(c.output_dir, ".scratch"), ignore_errors=True)
    shutil.rmtree(os.path.join(c.output_dir, "trainer"), ignore_errors=True)
    say(f"[{job.stage_name}] held-out pair accuracy {metrics.get('before_heldout_accuracy', float('nan')):.3f} -> "
        f"{metrics['heldout_accuracy']:.3f} ({len(held_rows)} pairs)")
    ray.get(job.store.adopt.remote(job.key, {}, {"path": save_dir, "metrics": metrics,
                                                 "artifacts": {"reward_model_log_history": history_path}}))
