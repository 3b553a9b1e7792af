"""Supervised fine-tuning: TRL's ``SFTTrainer`` inside a Ray Train job with DeepSpeed ZeRO.

YAML (``stage_configs.sft``)::

    dataset_name_or_path: examples/sample_data.jsonl   # file, folder or datasets hub name
    dataset_format: auto          # alpaca | sharegpt | messages | prompt_completion | text
    num_train_epochs: 3
    learning_rate: 2e-4
    use_peft: true                # LoRA; add load_in_4bit: true for QLoRA

Every conversational format becomes TRL's prompt/completion shape, where the completion is the
last assistant turn, so the loss is on completions only by default. LoRA adapters are merged
into the base at the end of the stage: the next stage receives full weights (and starts its own
adapters if it uses LoRA).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from fnsft.errors import ConfigError
from fnsft.stages.training import TrainStage, TrainStageConfig
from fnsft.workers.hf.trainers import SFT_TRAINER

log = logging.getLogger("fnsft")

SFTFormat = Literal["auto", "alpaca", "sharegpt", "messages", "prompt_completion", "text"]


@dataclass(kw_only=True)
class SFTConfig(TrainStageConfig):
    dataset_name_or_path: str = field(
        metadata={"help": "Training data: .jsonl/.json/.csv/.parquet file, a folder of them, or a hub name."})
    dataset_format: SFTFormat = field(
        default="auto", metadata={"help": "Data format; auto detects it from the first rows."})
    column_mapping: dict[str, str] = field(
        default_factory=dict, metadata={"help": "Rename columns first, e.g. {question: instruction}."})
    system_prompt: Optional[str] = field(
        default=None, metadata={"help": "System turn added to conversations that have none."})
    apply_chat_template: bool = field(
        default=False, metadata={"help": "Make plain-string prompt/completion rows a user turn and an assistant "
                                         "answer, formatted by the chat template (as the RL stage formats string "
                                         "prompts); false: trained as raw text, like TRL."})
    max_length: int = field(default=1024, metadata={"help": "Truncate tokenized examples to this length."})
    packing: bool = field(default=False, metadata={"help": "Pack several examples per sequence."})
    completion_only_loss: bool = field(
        default=True, metadata={"help": "Loss on completions only (false: on the whole sequence)."})
    padding_free: Optional[bool] = field(
        default=None,
        metadata={"help": "TRL padding_free: concatenate each batch's examples into one row, no padding. Default "
                  "(null): on where FlashAttention keeps the examples apart (GPU with flash_attn), else off. "
                  "See docs/performance.md."})
    train_sampling_strategy: Optional[str] = field(
        default=None,
        metadata={"help": "HF sampler: random, sequential, group_by_length (batches of similar length: little "
                  "padding) or batch_rebalance. Default (null): group_by_length unless padding-free."})
    num_train_epochs: float = field(default=3.0, metadata={"help": "Epochs over the training data."})
    data_streaming: bool = field(
        default=False,
        metadata={"help": "Stream the training rows through Ray Data: read, converted and tokenized in Ray Data "
                  "workers on the cluster, each Train worker reading its own shard, so the driver never holds "
                  "them; held out: the first rows (at most eval_max_rows). Local files, folders or pyarrow URIs; "
                  "no packing, length grouping, skip_bad_rows or hub sets yet. See docs/data.md."})


class SFTStage(TrainStage):
    """Supervised fine-tuning with TRL's SFTTrainer on Ray Train + DeepSpeed."""

    config_class = SFTConfig
    trainer = SFT_TRAINER

    @property
    def stage_name(self) -> str:
        return "sft"

    @property
    def random_order_reason(self):
        """A stream has no sampler to group lengths with: rows come in the stream's (seeded block) order."""
        if self.config.data_streaming:
            return "data_streaming: rows come in stream order (length grouping in a buffer is not built)"
        return None

    def validate_config(self) -> None:
        super().validate_config()
        c = self.config
        if c.max_length < 8:
            raise ConfigError(f"{self.key}.max_length: must be >= 8 (got {c.max_length})")
        if c.data_streaming:
            from fnsft.stages.sft_stream import check_streaming

            check_streaming(c, self.key)
        detect_data_format(c, c.dataset_name_or_path, f"{self.key}.dataset_name_or_path")
        if c.eval_dataset_path:
            detect_data_format(c, c.eval_dataset_path, f"{self.key}.eval_dataset_path")

    def data_format(self) -> str:
        """The training data's format, from its first rows (a hub set: ``dataset_format``)."""
        return self.format_of(self.config.dataset_name_or_path, f"{self.key}.dataset_name_or_path")

    def format_of(self, path: str, key: str) -> str:
        """The format of the data at ``path`` (YAML ``key``): :func:`detect_data_format`."""
        return detect_data_format(self.config, path, key)

    def needs_chat_template(self) -> bool:
        """Also when the data holds conversations (messages, sharegpt), whatever the config says."""
        return super().needs_chat_template() or self.data_format() in ("messages", "sharegpt")

    def describe_plan(self) -> dict[str, Any]:
        from fnsft.data.labels import describe_format
        from fnsft.data.splits import describe_eval_plan

        c = self.config
        fmt = self.data_format()
        steps = f"max_steps={c.max_steps}" if c.max_steps > 0 else f"epochs={c.num_train_epochs:g}"
        peft = "full fine-tune"
        if c.use_peft:
            peft = f"LoRA r={c.lora_r} alpha={c.lora_alpha}" + (" + 4-bit (QLoRA)" if c.load_in_4bit else "") \
                + (" + 8-bit" if c.load_in_8bit else "")
        return {
            "data": f"{c.dataset_name_or_path} (format: {describe_format(fmt) if fmt != 'auto' else 'detected at run time'})",
            "eval": describe_eval_plan(c.eval_dataset_path, c.eval_split, c.eval_max_rows),
            "training": f"{steps}, lr={c.learning_rate:g}, batch={c.per_device_train_batch_size}"
                        f"x{c.gradient_accumulation_steps} per worker, max_length={c.max_length}",
            "weights": peft,
        }

    def prepare_stream(self, model, tokenizer, num_workers: int):
        """With ``data_streaming``: the training rows as a Ray Data stream (:mod:`fnsft.stages.sft_stream`)."""
        if not self.config.data_streaming:
            return None
        from fnsft.stages.sft_stream import prepare_sft_stream

        if self.config.chat_template:  # the tokenizer handed on carries it, as in prepare_data
            tokenizer.chat_template = self.config.chat_template

        return prepare_sft_stream(self, model, num_workers)

    # ------------------------------------------------------------------------------------
    def _load(self, path: str, key: str) -> tuple[list[dict], str, Any]:
        """Every row of ``path`` converted to TRL's shape, its format, and the
        :class:`~fnsft.data.rows.RowReport` (bad rows: one line naming the line, or skipped)."""
        from fnsft.data.formats import detect_sft_format, to_prompt_completion
        from fnsft.data.rows import first_rows, read_rows

        c = self.config
        mapping = c.column_mapping or None
        fmt = detect_data_format(c, path, key)
        if fmt == "auto":  # a hub set: its first rows decide
            fmt = detect_sft_format(first_rows(path, 20), path, mapping)

        def convert(row: dict, where: str) -> dict:
            return to_prompt_completion(row, fmt, mapping, c.system_prompt, source=where, as_chat=c.apply_chat_template)

        rows, report = read_rows(path, convert, skip_bad_rows=c.skip_bad_rows, key=self.key)
        if report.skipped:
            log.warning("[sft] %s: %s", path, report.describe())
        return rows, fmt, report

    def prepare_data(self, tokenizer) -> tuple[dict[str, list[dict]], dict[str, Any]]:
        from fnsft.data.labels import describe_format

        c = self.config
        rows, fmt, report = self._load(c.dataset_name_or_path, f"{self.key}.dataset_name_or_path")
        log.info("[sft] %s: detected format %s, %d rows", c.dataset_name_or_path, describe_format(fmt), len(rows))
        eval_rows = None
        if c.eval_dataset_path:
            eval_rows, _, eval_report = self._load(c.eval_dataset_path, f"{self.key}.eval_dataset_path")
            report = report.add(eval_report)
        data = self.split_eval(rows, eval_rows)
        if c.chat_template:
            tokenizer.chat_template = c.chat_template
        too_long = count_truncated(data["train"], tokenizer, c.max_length)
        if too_long:
            log.warning("[sft] %d of %d training examples are longer than max_length=%d and will be truncated",
                        too_long, len(data["train"]), c.max_length)
        return data, {"dataset_format": fmt, "train_rows": len(data["train"]),
                      "eval_rows": len(data.get("eval", [])), "truncated_examples": too_long,
                      "skipped_rows": report.skipped}


def detect_data_format(c: SFTConfig, path: str, key: str) -> str:
    """The format of the data at ``path`` (YAML ``key``), read from its first rows.

    An explicit ``dataset_format`` wins but must fit the first row; ``auto`` is detected. A hub
    name has no rows to read offline, so its format stays ``dataset_format`` until it is loaded.
    Raises a ``ConfigError`` naming ``key`` for a missing or empty file or rows no format fits.
    """
    from fnsft.data.files import is_local_path, read_first_rows
    from fnsft.data.formats import detect_sft_format, to_prompt_completion

    from fnsft.data.ingest import is_uri

    if is_uri(path) and getattr(c, "data_streaming", False):  # read on the cluster: its first rows decide there
        return c.dataset_format
    if is_local_path(path) and not os.path.exists(path):
        raise ConfigError(f"{key}: dataset {path} not found")
    rows = read_first_rows(path, n=20)
    if not rows:
        if c.dataset_format == "auto" and is_local_path(path):
            raise ConfigError(f"{key}: {path} has no rows")
        return c.dataset_format
    detected = detect_sft_format(rows, path, c.column_mapping or None)
    wanted = c.dataset_format
    if wanted != "auto" and wanted != detected:
        to_prompt_completion(rows[0], wanted, c.column_mapping or None, index=0, source=path)
        return wanted
    return detected


def count_truncated(rows: list[dict], tokenizer, max_length: int) -> int:
    """How many rows tokenize to more than ``max_length`` tokens (TRL truncates them)."""
    n = 0
    for r in rows:
        if "text" in r:
            length = len(tokenizer(r["text"]).input_ids)
        elif isinstance(r["prompt"], list):
            ids = tokenizer.apply_chat_template(r["prompt"] + r["completion"], tokenize=True)
            length = len(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)
        else:
            length = len(tokenizer(r["prompt"] + r["completion"]).input_ids)
        n += length > max_length
    return n
