"""Direct Preference Optimization: TRL's ``DPOTrainer`` inside a Ray Train job with DeepSpeed ZeRO.

YAML (``stage_configs.dpo``)::

    preference_dataset_path: examples/preferences.jsonl   # file, folder or datasets hub name
    dataset_format: auto          # prompt_chosen_rejected | implicit_prompt | hh_rlhf | pairwise
    loss_type: sigmoid            # sigmoid (DPO) | ipo | hinge | cdpo | simpo
    beta: 0.1                     # KL strength: how far the policy may move from the reference
    max_length: 512               # prompt + answer tokens
    max_prompt_length: 256        # longer prompts keep their end (default: max_length / 2)
    use_peft: true                # LoRA: the reference is the adapter-disabled base

The reference is the model entering the stage (the previous stage's output, or the base model),
frozen: with LoRA the same weights with the adapters disabled; with a full fine-tune a second
copy of the incoming weights (or, with ``precompute_ref_log_probs``, its log-probs computed once
before training and no copy kept). SimPO needs none. Plain-string pairs are trained in the
tokenizer's chat format (a user turn and an assistant answer), as SFT trains and chat
inference uses. See docs/dpo.md.

This file is the stage (config, validation, data, plan); the trainer that runs in the Ray Train
workers is :mod:`fnsft.workers.hf.dpo_trainer` (the stage's ``trainer``: ``DPO_TRAINER``).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Optional

from fnsft.workers.hf.dpo_trainer import effective_beta, effective_max_prompt_length, effective_simpo_gamma
from fnsft.errors import ConfigError
from fnsft.stages.base import StageContext, StageResult
from fnsft.stages.training import TrainStage, TrainStageConfig
from fnsft.workers.hf.trainers import DPO_TRAINER

log = logging.getLogger("fnsft")

PreferenceFormat = Literal["auto", "prompt_chosen_rejected", "implicit_prompt", "hh_rlhf", "pairwise"]
LossType = Literal["sigmoid", "ipo", "hinge", "cdpo", "simpo"]


@dataclass(kw_only=True)
class DPOConfig(TrainStageConfig):
    preference_dataset_path: str = field(
        metadata={"help": "Preference pairs: .jsonl/.json/.csv/.parquet file, a folder of them, or a hub name."})
    dataset_format: PreferenceFormat = field(
        default="auto", metadata={"help": "Preference format; auto detects it from the first rows."})
    column_mapping: dict[str, str] = field(
        default_factory=dict, metadata={"help": "Rename columns first, e.g. {question: prompt, good: chosen}."})
    drop_invalid_pairs: bool = field(
        default=False,
        metadata={"help": "Drop unusable pairs (identical answers, empty answer, missing prompt) instead of "
                  "failing at validation."})
    use_chat_template: bool = field(
        default=True,
        metadata={"help": "Train plain-string pairs as chat turns (user prompt, assistant answer) rendered with "
                  "the tokenizer's chat template; false: on the raw strings."})
    system_prompt: Optional[str] = field(
        default=None, metadata={"help": "System turn added to chat prompts that have none."})
    loss_type: LossType = field(
        default="sigmoid",
        metadata={"help": "sigmoid (DPO), ipo, hinge, cdpo (conservative DPO: sigmoid with label_smoothing), "
                  "simpo (reference-free, length-normalised)."})
    beta: Optional[float] = field(
        default=None,
        metadata={"help": "KL strength: higher keeps the policy closer to the reference (IPO: its tau). "
                  "Default 0.1; 2.0 for simpo."})
    label_smoothing: float = field(
        default=0.0, metadata={"help": "cdpo only: assumed share of flipped labels, in (0, 0.5)."})
    simpo_gamma: Optional[float] = field(
        default=None, metadata={"help": "simpo only: target reward margin gamma (default 1.0)."})
    max_length: int = field(default=1024, metadata={"help": "Truncate prompt + answer to this many tokens."})
    max_prompt_length: Optional[int] = field(
        default=None,
        metadata={"help": "Keep only the last N prompt tokens, so answers keep room (default: max_length / 2)."})
    precompute_ref_log_probs: bool = field(
        default=False,
        metadata={"help": "Compute the reference log-probs once before training (no reference forward per step; "
                  "with a full fine-tune, no reference copy in memory)."})
    padding_free: Optional[bool] = field(
        default=None,
        metadata={"help": "TRL padding_free; TRL 1.16 disables it for DPO, so only null/false are "
                  "accepted (pairs are length-grouped instead)."})
    train_sampling_strategy: Optional[str] = field(
        default=None,
        metadata={"help": "HF sampler: random, sequential, group_by_length (batches of similar length: little "
                  "padding) or batch_rebalance. Default (null): group_by_length unless padding-free."})
    learning_rate: float = field(
        default=5e-6, metadata={"help": "Peak learning rate; DPO wants far less than SFT (full: ~5e-7)."})


class DPOStage(TrainStage):
    """Direct Preference Optimization with TRL's DPOTrainer on Ray Train + DeepSpeed."""

    config_class = DPOConfig
    trainer = DPO_TRAINER

    def __init__(self, config: DPOConfig, pipeline_config: Any = None):
        super().__init__(config, pipeline_config)
        # Every pair is read and screened once (at validation); the plan and prepare_data reuse
        # them rather than read the whole file again. Keyed by path (training and eval data).
        self._pairs: dict[str, PreferenceData] = {}

    @property
    def stage_name(self) -> str:
        return "dpo"

    # Validation (driver, before Ray) ---------------------------------------------------
    def validate_config(self) -> None:
        super().validate_config()
        c = self.config
        k = self.key
        if c.beta is not None and c.beta <= 0:
            raise ConfigError(f"{k}.beta: must be > 0 (got {c.beta})")
        if c.loss_type == "cdpo":
            if not 0 < c.label_smoothing < 0.5:
                raise ConfigError(f"{k}.label_smoothing: loss_type cdpo needs a value in (0, 0.5), e.g. 0.1 "
                                  f"(got {c.label_smoothing})")
        elif c.label_smoothing:
            raise ConfigError(f"{k}.label_smoothing: only used by loss_type cdpo (got loss_type {c.loss_type}); "
                              "set loss_type: cdpo or remove label_smoothing")
        if c.simpo_gamma is not None and c.loss_type != "simpo":
            raise ConfigError(f"{k}.simpo_gamma: only used by loss_type simpo (got loss_type {c.loss_type})")
        if c.loss_type == "simpo" and c.precompute_ref_log_probs:
            raise ConfigError(f"{k}.precompute_ref_log_probs: simpo uses no reference model; remove it")
        if c.max_length < 8:
            raise ConfigError(f"{k}.max_length: must be >= 8 (got {c.max_length})")
        if c.max_prompt_length is not None and not 1 <= c.max_prompt_length < c.max_length:
            raise ConfigError(f"{k}.max_prompt_length: must be in [1, max_length={c.max_length}) so the answer "
                              f"keeps some tokens (got {c.max_prompt_length})")
        # Read and screen every pair now: a bad row fails here, not minutes later in a worker.
        self.pairs(c.preference_dataset_path, f"{k}.preference_dataset_path")
        if c.eval_dataset_path:
            self.pairs(c.eval_dataset_path, f"{k}.eval_dataset_path")

    def pairs(self, path: str, key: str) -> PreferenceData:
        """The screened pairs of ``path`` (YAML ``key``), read on first use."""
        if path not in self._pairs:
            self._pairs[path] = read_pairs(self.config, path, key, self.stage_name)
        return self._pairs[path]

    def describe_plan(self) -> dict[str, Any]:
        from fnsft.data.labels import describe_format
        from fnsft.data.splits import describe_eval_plan

        c = self.config
        pairs, fmt, report = self.pairs(c.preference_dataset_path, f"{self.key}.preference_dataset_path")
        dropped = f", {report['dropped']} unusable dropped" if report["dropped"] else ""
        steps = f"max_steps={c.max_steps}" if c.max_steps > 0 else f"epochs={c.num_train_epochs:g}"
        peft = "full fine-tune"
        if c.use_peft:
            peft = f"LoRA r={c.lora_r} alpha={c.lora_alpha}" + (" + 4-bit (QLoRA)" if c.load_in_4bit else "") \
                + (" + 8-bit" if c.load_in_8bit else "")
        loss = f"{c.loss_type}, beta={effective_beta(c):g}"
        if c.loss_type == "cdpo":
            loss += f", label_smoothing={c.label_smoothing:g}"
        if c.loss_type == "simpo":
            loss += f", gamma={effective_simpo_gamma(c):g}"
        return {
            "data": f"{c.preference_dataset_path} (format: {describe_format(fmt)}; {len(pairs)} pairs{dropped})",
            "eval": describe_eval_plan(c.eval_dataset_path, c.eval_split, c.eval_max_rows),
            "loss": loss,
            "reference": describe_reference(c),
            "training": f"{steps}, lr={c.learning_rate:g}, batch={c.per_device_train_batch_size}"
                        f"x{c.gradient_accumulation_steps} pairs per worker, max_length={c.max_length}, "
                        f"max_prompt_length={effective_max_prompt_length(c)}",
            "weights": peft,
        }

    # Data (driver) ----------------------------------------------------------------------
    def prepare_data(self, tokenizer) -> tuple[dict[str, list[dict]], dict[str, Any]]:
        from fnsft.data.labels import describe_format

        c = self.config
        if c.chat_template:
            tokenizer.chat_template = c.chat_template
        pairs, fmt, report = self.pairs(c.preference_dataset_path, f"{self.key}.preference_dataset_path")
        eval_pairs, eval_fmt = [], fmt
        if c.eval_dataset_path:
            eval_pairs, eval_fmt, _ = self.pairs(c.eval_dataset_path, f"{self.key}.eval_dataset_path")
        has_template = bool(getattr(tokenizer, "chat_template", None))
        # Any conversation makes every pair a conversation: one dataset holds one shape.
        conversations = any(isinstance(p["prompt"], list) for p in pairs + eval_pairs)
        if conversations and not has_template:
            raise ConfigError(f"{self.key}: the pairs are conversations but the tokenizer has no chat template; "
                              "set chat_template")
        chat = conversations or (c.use_chat_template and has_template)
        if c.use_chat_template and not has_template:
            log.info("[dpo] the tokenizer has no chat template: plain-string pairs are trained as raw text")
        rows = to_trainer_rows(pairs, fmt, chat, c.system_prompt)
        eval_rows = to_trainer_rows(eval_pairs, eval_fmt, chat, c.system_prompt) if c.eval_dataset_path else None
        log.info("[dpo] %s: format %s, %d pairs", c.preference_dataset_path, describe_format(fmt), len(rows))
        data = self.split_eval(rows, eval_rows)
        max_prompt = effective_max_prompt_length(c)
        long_prompts, long_pairs = count_truncated_pairs(data["train"], tokenizer, c.max_length, max_prompt)
        if long_prompts or long_pairs:
            log.warning("[dpo] of %d training pairs, %d prompts exceed max_prompt_length=%d (their start is cut) "
                        "and %d pairs exceed max_length=%d (their end is cut)", len(data["train"]),
                        long_prompts, max_prompt, long_pairs, c.max_length)
        return data, {"dataset_format": fmt, "train_rows": len(data["train"]),
                      "eval_rows": len(data.get("eval", [])), "dropped_pairs": report["dropped"],
                      "skipped_rows": report["skipped_rows"],
                      "truncated_prompts": long_prompts, "truncated_pairs": long_pairs,
                      "reference": describe_reference(c)}

    def execute(self, model, tokenizer, previous_result: Optional[StageResult] = None, *,
                context: Optional[StageContext] = None) -> StageResult:
        result = super().execute(model, tokenizer, previous_result, context=context)
        # The worker derives perplexities from eval_loss; a DPO loss is no likelihood.
        for key in ("eval_perplexity", "before_eval_perplexity"):
            result.metrics.pop(key, None)
        return result


# Helpers of the driver (and the tests) ---------------------------------------------------
class PreferenceData(NamedTuple):
    """One preference file, screened: what validation, the plan and the Train job's data share."""

    pairs: list[dict]  # normalised: {"prompt", "chosen", "rejected"}
    format: str  # the detected (or configured) format
    report: dict  # normalize_preference_rows' drop report: total, dropped, reasons


def read_pairs(c: DPOConfig, path: str, key: str, stage_name: str = "dpo") -> PreferenceData:
    """Every pair of ``path`` (YAML ``key``), normalised and screened; unusable ones dropped
    (with ``drop_invalid_pairs``, logged) or a ``ConfigError`` naming ``key``."""
    from fnsft.data.files import is_local_path
    from fnsft.data.preference import detect_preference_format, normalize_preference_rows
    from fnsft.data.rows import read_rows

    mapping = c.column_mapping or None
    local = is_local_path(path)
    if local and not os.path.exists(path):
        raise ConfigError(f"{key}: dataset {path} not found")
    # A row that cannot be read stops with its file and line, or is skipped (skip_bad_rows).
    rows, read = read_rows(path, skip_bad_rows=c.skip_bad_rows, key=key.rsplit(".", 1)[0])
    if read.skipped:
        log.warning("[%s] %s: %s", stage_name, path, read.describe())
    if not rows:
        raise ConfigError(f"{key}: {path} has no rows")
    fmt = c.dataset_format
    if fmt == "auto":
        fmt = detect_preference_format(rows[:20], path, mapping)
    pairs, report = normalize_preference_rows(rows, fmt, path, c.drop_invalid_pairs, mapping)
    report["skipped_rows"] = read.skipped
    if report["dropped"]:
        reasons = ", ".join(f"{n} {r}" for r, n in report["reasons"].items() if n)
        log.warning("[%s] %s: dropped %d of %d pairs (%s)", stage_name, path, report["dropped"],
                    report["total"], reasons)
    return PreferenceData(pairs, fmt, report)


def describe_reference(c: DPOConfig) -> str:
    """Which reference the stage compares against (also recorded in the stage's metrics)."""
    if c.loss_type == "simpo":
        return "none (simpo is reference-free)"
    once = ", log-probs precomputed once" if c.precompute_ref_log_probs else ""
    if c.use_peft:
        return "incoming model with the LoRA adapters disabled" + once
    if c.precompute_ref_log_probs:
        return "incoming model, log-probs precomputed once before training (no copy kept)"
    return "frozen copy of the incoming model"


_HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):")


def hh_prompt_to_messages(prompt: str) -> list[dict]:
    """``"\\n\\nHuman: hi\\n\\nAssistant: yo\\n\\nHuman: q\\n\\nAssistant:"`` as chat messages."""
    parts = _HH_TURN.split(prompt)
    lead, turns = parts[0].strip(), parts[1:]
    messages = []
    for speaker, text in zip(turns[0::2], turns[1::2]):
        messages.append({"role": "user" if speaker == "Human" else "assistant", "content": text.strip()})
    if messages and messages[-1]["role"] == "assistant" and not messages[-1]["content"]:
        messages.pop()  # the open "Assistant:" the answers complete
    if lead and messages:
        messages[0]["content"] = lead + "\n\n" + messages[0]["content"]
    return messages


def to_trainer_rows(pairs: list[dict], fmt: str, chat: bool, system_prompt: Optional[str]) -> list[dict]:
    """Normalised pairs in the shape TRL takes: all conversational when ``chat``, else as they are.

    Plain strings become a user turn and assistant answers; Anthropic-HH prompts become their
    turns. ``system_prompt`` is added to conversations without a system turn.
    """
    out = []
    for p in pairs:
        prompt, chosen, rejected = p["prompt"], p["chosen"], p["rejected"]
        if chat and isinstance(prompt, str):
            prompt = hh_prompt_to_messages(prompt) if fmt == "hh_rlhf" else [{"role": "user", "content": prompt}]
            chosen = [{"role": "assistant", "content": chosen.strip()}]
            rejected = [{"role": "assistant", "content": rejected.strip()}]
        if isinstance(prompt, list) and system_prompt and not any(m["role"] == "system" for m in prompt):
            prompt = [{"role": "system", "content": system_prompt}, *prompt]
        out.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return out


def _token_count(tokenizer, prompt, answer=None) -> int:
    if isinstance(prompt, list):
        messages = prompt + (answer or [])
        ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=answer is None)
        return len(ids["input_ids"] if hasattr(ids, "keys") else ids)
    return len(tokenizer(prompt + (answer or "")).input_ids)


def count_truncated_pairs(rows: list[dict], tokenizer, max_length: int,
                          max_prompt_length: int) -> tuple[int, int]:
    """(prompts longer than ``max_prompt_length``, pairs whose longer side exceeds ``max_length``)."""
    long_prompts = long_pairs = 0
    for r in rows:
        n_prompt = _token_count(tokenizer, r["prompt"])
        long_prompts += n_prompt > max_prompt_length
        kept = min(n_prompt, max_prompt_length)
        longest = max(_token_count(tokenizer, r["prompt"], r[side]) - n_prompt for side in ("chosen", "rejected"))
        long_pairs += kept + longest > max_length
    return long_prompts, long_pairs
