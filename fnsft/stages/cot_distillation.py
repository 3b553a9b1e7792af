"""Chain-of-thought distillation: a teacher writes verified rationales, the student learns to reason.

YAML (``stages: [cot_distillation]``, ``stage_configs.cot_distillation``)::

    reasoning_dataset_path: examples/reasoning/train.jsonl   # question + gold answer (GSM8K shape)
    teacher_model_type: function        # local | api | function
    teacher_model_path: examples/reasoning/teacher.py:solve   # api: the model name, e.g. gpt-4
    num_samples_per_question: 4
    temperature: 0.7
    eval_dataset_path: examples/reasoning/eval.jsonl

Flow: the teacher (its own Ray actors, the API actor, or a function) writes
``num_samples_per_question`` rationales per question; they are verified against the gold answer
(or by self-consistency) and filtered (:mod:`fnsft.teachers.distill_data`); every rationale is
recorded in ``<stage output>/rationales.jsonl``. The student then trains in ONE Ray Train SFT job
(the SFT stage's machinery: LoRA/QLoRA, DeepSpeed, dtype) on question -> rationale + answer, and
its held-out exact-match accuracy is measured greedily before and after.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Optional

from fnsft.actors.group import RoleResources
from fnsft.errors import ConfigError, StageError
from fnsft.stages.base import StageContext, StageResult
from fnsft.stages.training import TrainStage, TrainStageConfig
from fnsft.workers.hf.trainers import SFT_TRAINER
from fnsft.teachers.base import DEFAULT_TEMPLATE

log = logging.getLogger("fnsft")


@dataclass(kw_only=True)
class CoTDistillationConfig(TrainStageConfig):
    reasoning_dataset_path: str = field(
        metadata={"help": "Questions with gold answers: .jsonl/.json/.csv/.parquet file or folder, or a hub name."})
    column_mapping: dict[str, str] = field(
        default_factory=dict, metadata={"help": "Rename columns first, e.g. {my_question: question}."})
    max_questions: Optional[int] = field(default=None, metadata={"help": "Use at most N training questions."})
    # Teacher
    teacher_model_type: str = field(default="local", metadata={"help": "local | api | function."})
    teacher_model_path: str = field(
        default="", metadata={"help": "local: folder, hub id or builtin:; api: model name; function: module:fn."})
    teacher_base_url: Optional[str] = field(
        default=None, metadata={"help": "api: OpenAI-compatible endpoint (default: OPENAI_BASE_URL)."})
    api_key_env: Optional[str] = field(
        default=None, metadata={"help": "api: name of the env var holding the key (default: OPENAI_API_KEY)."})
    teacher_api: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "api: client settings (max_concurrency, requests_per_minute, "
                                                "max_retries, timeout_s, max_calls, extra_body)."})
    teacher_resources: RoleResources = field(
        default_factory=RoleResources, metadata={"help": "local: teacher actors (num_replicas, num_cpus, num_gpus)."})
    teacher_batch_size: int = field(default=8, metadata={"help": "Questions per teacher request (per replica)."})
    teacher_apply_chat_template: bool = field(
        default=True, metadata={"help": "local: send the prompt as a user turn through the chat template."})
    teacher_prompt_template: str = field(
        default=DEFAULT_TEMPLATE, metadata={"help": "The teacher's prompt; {question} marks the question."})
    teacher_few_shot: list[dict] = field(
        default_factory=list, metadata={"help": "Worked examples [{question, rationale}] put before the question."})
    evaluate_teacher: bool = field(
        default=True, metadata={"help": "Measure the teacher's held-out accuracy (function/local teachers only)."})
    # Sampling and filtering
    num_samples_per_question: int = field(default=4, metadata={"help": "Rationales asked per question."})
    temperature: float = field(default=0.7, metadata={"help": "Teacher sampling temperature (0: greedy)."})
    max_new_tokens: int = field(default=256, metadata={"help": "Longest rationale; longer ones are dropped."})
    answer_extraction: str = field(
        default="hash_marks", metadata={"help": "hash_marks (#### 42) | boxed | last_number | regex."})
    answer_regex: Optional[str] = field(default=None, metadata={"help": "regex extraction: a pattern with one group."})
    numeric_tolerance: float = field(default=1e-4, metadata={"help": "Relative tolerance of numeric answers."})
    verify_answers: bool = field(
        default=True, metadata={"help": "Keep only rationales whose answer matches the gold answer."})
    min_agreement: float = field(
        default=0.5, metadata={"help": "No gold answers: the majority answer's share needed to keep its rationales."})
    rationalize: bool = field(
        default=False, metadata={"help": "STaR: ask once more with the answer as a hint where all samples failed."})
    max_rationales_per_question: int = field(default=0, metadata={"help": "Keep at most N per question (0: all)."})
    # Student
    output_format: str = field(
        default="hash_marks", metadata={"help": "hash_marks: rationale then '#### answer'; two_task: "
                                                "[rationale]/[answer] tasks (distilling step-by-step)."})
    max_length: int = field(default=512, metadata={"help": "Truncate tokenized examples to this length."})
    packing: bool = field(default=False, metadata={"help": "Pack several examples per sequence."})
    padding_free: Optional[bool] = field(
        default=None, metadata={"help": "TRL padding_free (as in sft). Default (null): on a GPU with flash_attn."})
    train_sampling_strategy: Optional[str] = field(
        default=None, metadata={"help": "HF sampler (as in sft). Default (null): random order, unless "
                                        "padding-free (see docs/cot_distillation.md)."})
    completion_only_loss: bool = field(default=True, metadata={"help": "Loss on the answer only."})
    eval_split: float = field(
        default=0.1, metadata={"help": "Share of the questions held out for the accuracy eval (no teacher data)."})
    eval_max_new_tokens: int = field(default=128, metadata={"help": "Student answer length at evaluation."})
    eval_num_cpus: Optional[float] = field(
        default=None, metadata={"help": "CPUs of the student's evaluation actor (default: on a local Ray, the "
                                        "CPUs free then, nothing else runs while it evaluates; on a cluster 1)."})
    num_train_epochs: float = field(default=3.0, metadata={"help": "Epochs over the kept rationales."})


class CoTDistillationStage(TrainStage):
    """Chain-of-thought distillation: teacher rationales, verified and filtered, train the student."""

    config_class = CoTDistillationConfig
    trainer = SFT_TRAINER
    # A rationale's length follows its problem's number of steps, so length-grouped batches hold
    # one kind of problem each and the student learned less (docs/cot_distillation.md, "Why random order").
    random_order_reason = ("random order: length-grouped batches would each hold one kind of problem "
                           "(a rationale's length follows its number of steps) and learned less")

    def __init__(self, config: CoTDistillationConfig, pipeline_config: Any = None):
        super().__init__(config, pipeline_config)
        # The student's rows ("train", optional "eval") of the execute in progress: made from the
        # teacher's kept rationales, then handed to TrainStage.execute's prepare_data hook (which
        # takes only the tokenizer). None outside execute.
        self._student_rows: Optional[dict[str, list[dict]]] = None

    @property
    def stage_name(self) -> str:
        return "cot_distillation"

    # Validation (no Ray, no torch) -------------------------------------------------------
    def validate_config(self) -> None:
        from fnsft.data.answers import check_extraction
        from fnsft.data.cot_format import OUTPUT_FORMATS
        from fnsft.teachers.factory import check_teacher

        super().validate_config()
        c, key = self.config, self.key
        if not c.reasoning_dataset_path:
            raise ConfigError(f"{key}.reasoning_dataset_path: missing; give a file of questions with answers")
        check_teacher(c, key)
        check_extraction(c.answer_extraction, c.answer_regex, key)
        if c.output_format not in OUTPUT_FORMATS:
            raise ConfigError(f"{key}.output_format: unknown '{c.output_format}' (accepted: {', '.join(OUTPUT_FORMATS)})")
        for name in ("num_samples_per_question", "max_new_tokens", "teacher_batch_size", "eval_max_new_tokens"):
            if getattr(c, name) < 1:
                raise ConfigError(f"{key}.{name}: must be >= 1 (got {getattr(c, name)})")
        if c.temperature < 0:
            raise ConfigError(f"{key}.temperature: must be >= 0 (got {c.temperature})")
        if not 0 < c.min_agreement <= 1:
            raise ConfigError(f"{key}.min_agreement: must be in (0, 1] (got {c.min_agreement})")
        self._check_data(c.reasoning_dataset_path, "reasoning_dataset_path")
        if c.eval_dataset_path:
            self._check_data(c.eval_dataset_path, "eval_dataset_path")

    def reasoning_columns(self) -> Optional[tuple[str, Optional[str]]]:
        """The training data's (question, answer) columns from its first rows (answer None: no
        gold answers); None for a hub set, checked when it is loaded."""
        return self._check_data(self.config.reasoning_dataset_path, "reasoning_dataset_path")

    def _check_data(self, path: str, name: str) -> Optional[tuple[str, Optional[str]]]:
        from fnsft.data.files import is_local_path, read_first_rows
        from fnsft.data.reasoning import ANSWER_COLUMNS, detect_reasoning_columns

        key = f"{self.key}.{name}"
        if is_local_path(path) and not os.path.exists(path):
            raise ConfigError(f"{key}: {path} not found")
        rows = read_first_rows(path, n=20)
        if not rows:
            if is_local_path(path):
                raise ConfigError(f"{key}: {path} has no rows")
            return None  # hub dataset: checked when loaded
        q, a = detect_reasoning_columns(rows, path, self.config.column_mapping or None, key)
        if a is None and (self.config.verify_answers or name == "eval_dataset_path"):
            raise ConfigError(
                f"{key}: {path} has no answer column (looked for {', '.join(ANSWER_COLUMNS)}) and verify_answers is "
                "on; add answers, map a column with column_mapping, or set verify_answers: false (self-consistency)")
        return q, a

    def describe_plan(self) -> dict[str, Any]:
        from fnsft.data.splits import describe_eval_plan

        c = self.config
        cols = self.reasoning_columns()
        verify = ("against the gold answer" if c.verify_answers and (cols is None or cols[1])
                  else f"self-consistency (min_agreement {c.min_agreement:g})")
        return {
            "data": f"{c.reasoning_dataset_path}" + (f" (question: {cols[0]}, answer: {cols[1] or 'none'})" if cols else ""),
            "teacher": f"{c.teacher_model_type}: {c.teacher_model_path}"
                       + (f" at {c.teacher_base_url or 'OPENAI_BASE_URL'}" if c.teacher_model_type == "api" else ""),
            "sampling": f"{c.num_samples_per_question} per question, temperature {c.temperature:g}, "
                        f"max_new_tokens {c.max_new_tokens}",
            "filter": f"{c.answer_extraction} answers verified {verify}" + ("; STaR rationalisation" if c.rationalize else ""),
            "student": f"{c.output_format}, "
                       + (f"max_steps={c.max_steps}" if c.max_steps > 0 else f"epochs={c.num_train_epochs:g}")
                       + f", lr={c.learning_rate:g}, "
                       + (f"LoRA r={c.lora_r}" if c.use_peft else "full fine-tune"),
            "eval": describe_eval_plan(c.eval_dataset_path, c.eval_split, c.eval_max_rows, ' of the questions'),
        }

    # Running ----------------------------------------------------------------------------
    def question_splits(self) -> tuple[list[dict], list[dict]]:
        """Training questions and held-out ones (``eval_dataset_path`` or ``eval_split``, before any teacher call)."""
        from fnsft.data.reasoning import load_reasoning_rows
        from fnsft.data.splits import cap_eval_rows, split_held_out

        c = self.config
        rows = load_reasoning_rows(c.reasoning_dataset_path, c.column_mapping or None,
                                   f"{self.key}.reasoning_dataset_path", c.skip_bad_rows)
        if c.eval_dataset_path:
            held = load_reasoning_rows(c.eval_dataset_path, c.column_mapping or None, f"{self.key}.eval_dataset_path",
                                       c.skip_bad_rows)
            held = cap_eval_rows(held, c.eval_max_rows, c.eval_dataset_path).eval
        else:  # the eval_split share, at most eval_max_rows questions
            rows, held, _ = split_held_out(rows, c.eval_split, c.eval_max_rows, c.seed)
        if c.max_questions:
            rows = rows[: c.max_questions]
        return rows, held

    def execute(self, model, tokenizer, previous_result: Optional[StageResult] = None, *,
                context: Optional[StageContext] = None) -> StageResult:
        from fnsft.data.cot_format import student_rows
        from fnsft.stages.cot_eval import plot_cot, student_accuracy
        from fnsft.teachers.distill_data import distill, settings_from, teacher_accuracy
        from fnsft.teachers.factory import make_teacher

        c = self.config
        dtype = getattr(self.pipeline_config, "torch_dtype", "auto")
        os.makedirs(c.output_dir, exist_ok=True)
        train_q, held = self.question_splits()
        settings = settings_from(c)
        log.info("[cot_distillation] %d training questions, %d held out; teacher %s:%s", len(train_q), len(held),
                 c.teacher_model_type, c.teacher_model_path)
        teacher = make_teacher(c, dtype)
        metrics: dict[str, Any] = {}
        eval_kept: list[dict] = []
        try:
            result = distill(teacher, train_q, settings, c.output_dir, say=log.info)
            metrics.update(result.metrics)
            if held and c.evaluate_teacher and c.teacher_model_type != "api":
                acc, eval_kept = teacher_accuracy(teacher, held, settings, c.output_dir)
                metrics["teacher_accuracy"] = acc
        finally:
            teacher.close()
        self._log_filters(metrics)
        if not result.kept:
            raise StageError(f"cot_distillation: no rationale passed the filters ({_reasons(metrics)}); "
                             f"see {result.records_path}")
        rows = [r for rec in result.kept for r in student_rows(
            rec["question"], rec["text"], rec["extracted_answer"], c.output_format, c.answer_extraction)]
        eval_rows = [r for rec in eval_kept for r in student_rows(
            rec["question"], rec["text"], rec["extracted_answer"], c.output_format, c.answer_extraction)]
        if held and c.eval_before_training:
            before = student_accuracy(model, held, c, dtype, os.path.join(c.output_dir, "eval_before.jsonl"))
            metrics.update({f"student_{k}_before": v for k, v in before.items()})
            log.info("[cot_distillation] student before training: held-out accuracy %.1f%%", 100 * before["accuracy"])
        self._student_rows = {"train": rows, **({"eval": eval_rows} if eval_rows else {})}
        try:
            out = super().execute(model, tokenizer, previous_result, context=context)
        finally:
            self._student_rows = None
        if held:
            after = student_accuracy(out.model, held, c, dtype, os.path.join(c.output_dir, "eval_after.jsonl"))
            metrics.update({f"student_{k}_after": v for k, v in after.items()})
            log.info("[cot_distillation] student after training: held-out accuracy %.1f%%%s", 100 * after["accuracy"],
                     f" (before {100 * metrics['student_accuracy_before']:.1f}%)"
                     if "student_accuracy_before" in metrics else "")
        out.metrics = {**metrics, **out.metrics}
        out.artifacts["rationales"] = result.records_path
        png = plot_cot(out.metrics, os.path.join(c.output_dir, "cot_distillation.png"))
        if png:
            out.artifacts["cot_plot"] = png
        return out

    def prepare_data(self, tokenizer) -> tuple[dict[str, list[dict]], dict[str, Any]]:
        from fnsft.stages.sft import count_truncated

        data = self._student_rows
        if data is None:
            raise StageError("cot_distillation: prepare_data runs inside execute, once the teacher's rationales "
                             "are filtered; call execute")
        too_long = count_truncated(data["train"], tokenizer, self.config.max_length)
        if too_long:
            log.warning("[cot_distillation] %d of %d student examples exceed max_length=%d and will be truncated",
                        too_long, len(data["train"]), self.config.max_length)
        return data, {"student_train_rows": len(data["train"]), "student_eval_rows": len(data.get("eval", [])),
                      "truncated_examples": too_long}

    def _log_filters(self, m: dict) -> None:
        rates = ", ".join(f"{k.split('/', 1)[1]} {v:.0%}" for k, v in m.items() if k.startswith("filter_keep_rate/"))
        log.info("[cot_distillation] teacher: %d asked, %d from cache; kept %d of %d rationales (%.0f%%), "
                 "%d of %d questions covered; keep rate per filter: %s; dropped: %s",
                 m.get("teacher_samples_asked", 0), m.get("teacher_samples_cached", 0), m.get("kept_rationales", 0),
                 m.get("rationales", 0), 100 * m.get("kept_rate", 0), m.get("questions_with_rationale", 0),
                 m.get("questions", 0), rates, _reasons(m))


def _reasons(m: dict) -> str:
    return ", ".join(f"{k.split('/', 1)[1]} {v}" for k, v in m.items() if k.startswith("dropped/")) or "none"
