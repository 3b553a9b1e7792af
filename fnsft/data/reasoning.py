"""Reasoning datasets: questions with (optional) gold answers.

YAML (``stage_configs.cot_distillation``): ``reasoning_dataset_path`` is a local
.jsonl/.json/.csv/.parquet file or folder, or a ``datasets`` hub name. The question column is
the first of ``question`` / ``problem`` / ``input`` / ``prompt``, the gold answer column the first of
``final_answer`` / ``answer`` / ``solution`` / ``output``; ``column_mapping`` renames columns first
(``{my_q: question}``). GSM8K answers (``"... #### 42"``) and MATH solutions (``\\boxed{}``) are
reduced to their final answer.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Optional

from fnsft.data.answers import gold_answer
from fnsft.data.formats import apply_column_mapping
from fnsft.errors import ConfigError

log = logging.getLogger("fnsft")

QUESTION_COLUMNS = ("question", "problem", "input", "prompt")
# final_answer first: a row with both a worked solution and a final answer compares on the latter.
ANSWER_COLUMNS = ("final_answer", "answer", "solution", "output")


def detect_reasoning_columns(rows: list[dict], source: str, column_mapping: Optional[dict] = None,
                             key: str = "reasoning_dataset_path") -> tuple[str, Optional[str]]:
    """``(question column, answer column or None)`` from the first rows (after ``column_mapping``)."""
    mapped = [apply_column_mapping(r, column_mapping) for r in rows]
    columns = [c for r in mapped[:1] for c in r]
    question = next((c for c in QUESTION_COLUMNS if all(c in r for r in mapped)), None)
    if question is None:
        raise ConfigError(
            f"{key}: {source} has no question column (looked for {', '.join(QUESTION_COLUMNS)}; found "
            f"{', '.join(columns) or 'none'}); rename one with column_mapping: {{your_column: question}}")
    answer = next((c for c in ANSWER_COLUMNS if all(c in r for r in mapped)), None)
    return question, answer


def question_id(question: str) -> str:
    """A stable id for a question (its text's hash): provenance rows and caches name it."""
    return hashlib.sha256(question.strip().encode("utf-8")).hexdigest()[:16]


def to_reasoning_rows(rows: list[dict], source: str, column_mapping: Optional[dict] = None,
                      key: str = "reasoning_dataset_path") -> list[dict]:
    """Rows as ``{"id", "question", "answer"}`` (``answer`` None when the data has no gold answer)."""
    if not rows:
        return []
    q_col, a_col = detect_reasoning_columns(rows[:20], source, column_mapping, key)
    out = []
    for i, raw in enumerate(rows):
        row = apply_column_mapping(raw, column_mapping)
        question = row.get(q_col)
        if not isinstance(question, str) or not question.strip():
            raise ConfigError(f"{key}: {source} row {i}: '{q_col}' is empty or not text")
        answer = gold_answer(row.get(a_col)) if a_col else None
        out.append({"id": question_id(question), "question": question.strip(), "answer": answer})
    return out


def load_reasoning_rows(path: str, column_mapping: Optional[dict] = None,
                        key: str = "reasoning_dataset_path", skip_bad_rows: bool = False) -> list[dict]:
    """Every row of ``path`` (local file/folder or hub name) as :func:`to_reasoning_rows` gives them;
    a row that cannot be read stops with its file and line (or is skipped: ``skip_bad_rows``)."""
    from fnsft.data.rows import read_rows

    rows, report = read_rows(path, skip_bad_rows=skip_bad_rows, key=key.rsplit(".", 1)[0] if "." in key else "")
    if report.skipped:
        log.warning("%s: %s", path, report.describe())
    if not rows:
        raise ConfigError(f"{key}: {path} has no rows")
    return to_reasoning_rows(rows, path, column_mapping, key)
