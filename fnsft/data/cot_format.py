"""What the CoT student learns and how its answers are read (YAML ``output_format``).

- ``hash_marks`` (default): the bare question -> the rationale, then ``#### <answer>`` (GSM8K's
  shape). The student is asked the bare question and its answer is read after ``####``.
- ``two_task``: distilling step-by-step (Hsieh et al., 2023): every kept rationale makes two
  examples, ``[rationale] question`` -> rationale and ``[answer] question`` -> answer. At
  evaluation the student is asked ``[answer] question`` and its first line is the answer.

Rows are conversational (a user turn, an assistant answer), so TRL's loss is on the answer only
and the chat template formats the question the same way at training and evaluation.
"""

from __future__ import annotations

import re
from typing import Optional

from fnsft.data.answers import extract_answer

OUTPUT_FORMATS = ("hash_marks", "two_task")
RATIONALE_TAG, ANSWER_TAG = "[rationale]", "[answer]"


def rationale_body(text: str, extraction: str = "hash_marks") -> str:
    """The reasoning without its final-answer line (``#### x`` / a trailing ``\\boxed{x}`` line)."""
    body = text
    if extraction == "hash_marks" and "####" in body:
        body = body[: body.rfind("####")]
    elif extraction == "boxed":
        lines = body.rstrip().splitlines()
        if lines and "\\boxed" in lines[-1] and len(lines) > 1:
            body = "\n".join(lines[:-1])
    return body.strip()


def student_rows(question: str, rationale: str, answer: str, output_format: str = "hash_marks",
                 extraction: str = "hash_marks") -> list[dict]:
    """Training rows (TRL conversational prompt/completion) for one kept rationale."""
    body = rationale_body(rationale, extraction)

    def row(prompt: str, completion: str) -> dict:
        return {"prompt": [{"role": "user", "content": prompt}],
                "completion": [{"role": "assistant", "content": completion}]}

    if output_format == "two_task":
        return [row(f"{RATIONALE_TAG} {question}", body), row(f"{ANSWER_TAG} {question}", str(answer))]
    return [row(question, f"{body}\n#### {answer}" if body else f"#### {answer}")]


def student_prompt(question: str, output_format: str = "hash_marks") -> str:
    """What the student is asked at evaluation."""
    return f"{ANSWER_TAG} {question}" if output_format == "two_task" else question


def student_answer(text: str, output_format: str = "hash_marks") -> Optional[str]:
    """The student's final answer from its completion (``None``: it wrote none)."""
    if output_format == "two_task":
        first = next((line.strip() for line in (text or "").splitlines() if line.strip()), "")
        return re.sub(r"^(####|answer:)\s*", "", first, flags=re.I) or None
    return extract_answer(text, "hash_marks")
