"""RLAIF ``mode: reward_model`` (canonical RLAIF): judge-labelled pairs train a reward model, then PPO.

YAML (``stage_configs.rlaif``)::

    mode: reward_model
    judge: {type: local, kind: pairwise}     # pairwise (both orders) or pointwise/binary (best vs worst)
    reward_model:                            # names as TRL's RewardConfig / reward_modeling script
      model_name_or_path: null               # null: the stage's input policy with a new scalar head
      num_prompts: 0                         # training prompts sampled for labelling (0: all)
      num_generations: 2                     # completions per prompt (the pair candidates)
      eval_split: 0.2                        # share of the labelled prompts held back: pair accuracy
      learning_rate: 1.0e-4
      num_train_epochs: 1
      per_device_train_batch_size: 8
      max_length: 1024
      center_rewards_coefficient: null

The driver samples ``num_generations`` completions per prompt from the input policy (generation
actors), labels pairs with the stage's judge (:func:`fnsft.judges.pairs.label_pairs`: its cache,
masking and position debiasing), writes them to ``preference_pairs.jsonl``, and runs one Ray Train
job with TRL's ``RewardTrainer`` (:mod:`fnsft.workers.hf.reward_trainer`) that saves the reward
model to ``<stage dir>/reward_model`` (safetensors) and measures its accuracy on the held-back
pairs. The RL loop then scores with that model in the reward actors (a ``type: model`` reward term).
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from dataclasses import dataclass, field, replace
from typing import Any, Optional

from fnsft.errors import ConfigError

log = logging.getLogger("fnsft")


@dataclass
class RewardModelSettings:
    """``rlaif.reward_model``: the reward model of ``mode: reward_model`` (TRL ``RewardConfig`` names)."""

    model_name_or_path: Optional[str] = field(
        default=None, metadata={"help": "Starting weights of the reward model (a folder, hub id or builtin:; a "
                                        "sequence-classification head is added); default: the stage's input policy."})
    num_prompts: int = field(default=0, metadata={"help": "Training prompts sampled for labelling (0: all)."})
    num_generations: int = field(
        default=2, metadata={"help": "Completions per prompt; a pointwise/binary judge pairs the best with the worst, "
                                     "a pairwise judge compares them two by two (both orders)."})
    eval_split: float = field(
        default=0.2, metadata={"help": "Share of the labelled prompts whose pairs are held back from training; the "
                                       "reward model's accuracy on them is reported (must be in (0, 1))."})
    learning_rate: float = field(default=1e-4, metadata={"help": "Reward model learning rate (TRL's default)."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Epochs over the training pairs."})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Pairs per worker and step."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per optimizer step."})
    max_length: Optional[int] = field(
        default=1024, metadata={"help": "Pairs whose prompt + completion exceeds this many tokens are dropped (null: "
                                        "no limit)."})
    center_rewards_coefficient: Optional[float] = field(
        default=None, metadata={"help": "Pulls rewards towards mean zero (TRL; 0.01 recommended; null: off)."})


def check_reward_model_settings(c, key: str) -> None:
    """One-line :class:`ConfigError` for a bad ``reward_model`` section (no torch/ray)."""
    rm, key = c.reward_model, f"{key}.reward_model"
    if c.mode != "reward_model":
        if rm != RewardModelSettings():
            raise ConfigError(f"{key}: only used by mode: reward_model (mode is {c.mode}); remove it or set "
                              "mode: reward_model")
        return
    if rm.num_generations < 2:
        raise ConfigError(f"{key}.num_generations: a pair needs two completions of a prompt; use >= 2 "
                          f"(got {rm.num_generations})")
    if rm.num_prompts < 0:
        raise ConfigError(f"{key}.num_prompts: must be >= 0 (0: all training prompts; got {rm.num_prompts})")
    if not 0 < rm.eval_split < 1:
        raise ConfigError(f"{key}.eval_split: must be in (0, 1): the held-back pairs measure the reward model "
                          f"(got {rm.eval_split})")
    for name in ("learning_rate", "num_train_epochs"):
        if getattr(rm, name) <= 0:
            raise ConfigError(f"{key}.{name}: must be > 0 (got {getattr(rm, name)})")
    for name in ("per_device_train_batch_size", "gradient_accumulation_steps"):
        if getattr(rm, name) < 1:
            raise ConfigError(f"{key}.{name}: must be >= 1 (got {getattr(rm, name)})")
    if rm.max_length is not None and rm.max_length < 2:
        raise ConfigError(f"{key}.max_length: must be >= 2 tokens or null (got {rm.max_length})")
    if rm.center_rewards_coefficient is not None and rm.center_rewards_coefficient < 0:
        raise ConfigError(f"{key}.center_rewards_coefficient: must be >= 0 or null (got {rm.center_rewards_coefficient})")
    if rm.model_name_or_path and not rm.model_name_or_path.startswith("builtin:"):
        path = os.path.expanduser(rm.model_name_or_path)
        if (path.startswith((".", "/", "~")) or os.path.isdir(path)) and not os.path.isfile(
                os.path.join(path, "config.json")):
            raise ConfigError(f"{key}.model_name_or_path: {rm.model_name_or_path} is not a model folder (no config.json)")


def describe_reward_model(c) -> str:
    rm = c.reward_model
    start = rm.model_name_or_path or "the input policy + a scalar head"
    return (f"{rm.num_prompts or 'all'} prompts x {rm.num_generations} samples, judged into pairs "
            f"({rm.eval_split:g} held back) -> TRL RewardTrainer on {start}, {rm.num_train_epochs:g} epoch(s), "
            f"lr {rm.learning_rate:g} -> reward_model/; then {c.algorithm} against it")


# Running (driver) -----------------------------------------------------------------------------
def build_reward_model(stage, model, judge, splits: dict, context=None) -> tuple[Any, dict, dict]:
    """Sample, label with ``judge``, write the pairs, train the reward model (one Train job).

    Returns ``(reward spec for the RL loop, metrics, artifacts)``. The judge is closed after
    labelling (a local judge's pool is stopped: the RL roles need the CPUs); its books stay.
    ``context``: the stage's :class:`~fnsft.stages.base.StageContext` (its Train callbacks apply to
    the reward model's job).
    """
    from fnsft.judges.pairs import label_pairs
    from fnsft.rl.rewards import RewardSpec
    from fnsft.utils.console import say

    c, rm = stage.config, stage.config.reward_model
    os.makedirs(c.output_dir, exist_ok=True)
    rows = list(splits["train"])
    if rm.num_prompts and rm.num_prompts < len(rows):
        rows = random.Random(c.seed).sample(rows, rm.num_prompts)
    t0 = time.perf_counter()
    prompts, texts = _sample(stage, model, rows)
    sample_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    try:
        pairs = label_pairs(judge, prompts, texts, rm.num_generations)
    finally:
        judge.close()
    label_s = time.perf_counter() - t0
    train, held = split_pairs(pairs, rm.eval_split, c.seed)
    pairs_path = os.path.join(c.output_dir, "preference_pairs.jsonl")
    with open(pairs_path, "w", encoding="utf-8") as f:  # the DPO stage's preference_dataset_path
        for split, part in (("train", train), ("eval", held)):
            for p in part:
                f.write(json.dumps({**p, "split": split}, ensure_ascii=False) + "\n")
    say(f"[{stage.stage_name}] reward model data: {len(rows)} prompts x {rm.num_generations} samples "
        f"({sample_s:.1f}s), judged into {len(pairs)} pairs ({label_s:.1f}s): {len(train)} to train, "
        f"{len(held)} held back")
    if len(train) < 2 or not held:
        from fnsft.errors import StageError

        raise StageError(f"{stage.key}.reward_model: the judge gave {len(pairs)} usable pairs ({len(train)} to "
                         f"train, {len(held)} held back); raise reward_model.num_prompts or num_generations, or "
                         "check the judge (ties and masked judgements make no pair)")
    out = _train(stage, model, train, held, context)
    path = os.path.join(c.output_dir, "reward_model")
    metrics = {"reward_model_pairs": len(pairs), "reward_model_train_pairs": len(train),
               "reward_model_eval_pairs": len(held), "reward_model_sample_s": round(sample_s, 2),
               "reward_model_label_s": round(label_s, 2),
               **{f"reward_model_{k}": v for k, v in out["metrics"].items()}}
    metrics["reward_model_train_job_s"] = out["timings"]["train_job_s"]
    say(f"[{stage.stage_name}] reward model: held-out pair accuracy "
        f"{out['metrics'].get('before_heldout_accuracy', float('nan')):.3f} -> {out['metrics']['heldout_accuracy']:.3f} "
        f"({len(held)} pairs), saved to {path}")
    spec = RewardSpec(type="model", path=path, weight=c.judge_weight, name="reward_model")
    return spec, metrics, {"reward_model": path, "preference_pairs": pairs_path}


def split_pairs(pairs: list[dict], share: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Pairs held back by prompt (a held-back prompt's pairs are all held back: none was trained on)."""
    keys = sorted({json.dumps(p["prompt"], sort_keys=True) for p in pairs})
    random.Random(seed).shuffle(keys)
    n_held = max(1, int(round(len(keys) * share))) if len(keys) > 1 else 0
    held_keys = set(keys[:n_held])
    held = [p for p in pairs if json.dumps(p["prompt"], sort_keys=True) in held_keys]
    return [p for p in pairs if json.dumps(p["prompt"], sort_keys=True) not in held_keys], held


def _sample(stage, model, rows: list[dict]) -> tuple[list, list[str]]:
    """``num_generations`` sampled completions per prompt from the input policy (generation actors)."""
    from fnsft.actors.generation import GenerationActor
    from fnsft.actors.group import ActorGroup, RoleResources
    from fnsft.actors.rollout import expand_rows

    from fnsft.stages.rl_settings import generation_engine

    c = stage.config
    prompts, _ = expand_rows(rows, c.reward_model.num_generations)
    gen = c.generation
    choice = generation_engine(c, stage.key, model.source, gen.num_gpus > 0)  # vLLM's venv: its python
    group = ActorGroup(GenerationActor, RoleResources(gen.num_replicas, gen.num_cpus, gen.num_gpus), args=(model,),
                       kwargs={"dtype": getattr(stage.pipeline_config, "torch_dtype", "auto"),
                               "apply_chat_template": c.apply_chat_template, "chat_template": c.chat_template,
                               "engine": choice.engine, "batch_size": gen.batch_size, "vllm_kwargs": gen.vllm_kwargs},
                       name=f"{stage.stage_name}-rm-samples", runtime_env=choice.runtime_env(int(gen.num_cpus)))
    try:
        texts = group.split(prompts, lambda actor, chunk: actor.generate.remote(chunk, c.sampling(), c.seed))["texts"]
    finally:
        group.kill()
    return prompts, texts


def _train(stage, model, train: list[dict], held: list[dict], context) -> dict:
    """One Ray Train job: TRL's RewardTrainer on ``train``, accuracy on ``held`` before and after."""
    from fnsft.workers.hf.reward_trainer import reward_model_worker

    c, rm = stage.config, stage.config.reward_model
    # The reward model's own hyperparameters in the fields the HF/TRL arguments are read from.
    rm_config = replace(c, learning_rate=rm.learning_rate, num_train_epochs=rm.num_train_epochs, max_steps=-1,
                        per_device_train_batch_size=rm.per_device_train_batch_size,
                        per_device_eval_batch_size=rm.per_device_train_batch_size,
                        gradient_accumulation_steps=rm.gradient_accumulation_steps, lr_scheduler_type="linear",
                        warmup_steps=0, use_peft=False, save_steps=0, eval_steps=None, logging_steps=5,
                        output_dir=os.path.join(c.output_dir, "reward_model_train"))
    os.makedirs(rm_config.output_dir, exist_ok=True)
    # A fresh Train run name (resume=False, no save_steps): a rerun relabels from the judge cache and retrains.
    return stage.launch(model, reward_model_worker, {"train": train, "eval": held}, context=context, resume=False,
                        save_dir=os.path.join(c.output_dir, "reward_model"), stage_config=rm_config,
                        job_name=f"{stage.stage_name}-reward-model")
