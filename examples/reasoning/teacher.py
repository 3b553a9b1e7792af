"""Function teachers for the shipped word problems (YAML ``teacher_model_type: function``).

``solve`` writes the exact step-by-step solution, ending in ``#### answer``. ``noisy_solve``
(tests) is wrong on purpose for about a quarter of the questions (the final answer is off by
one), and for others writes a rationale with no final answer, or one cut short
(``finish_reason: length``), so every filter has something to drop.
"""

from __future__ import annotations

import hashlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from problems import parse_problem, solve_values  # noqa: E402


def solve(question: str, hint=None) -> str:
    parsed = parse_problem(question)
    if parsed is None:
        return "I cannot solve this problem."  # no '####': dropped as malformed
    lines, answer = solve_values(*parsed)
    return "\n".join(lines) + f"\n#### {answer}"


def _bucket(question: str) -> int:
    return int(hashlib.sha256(question.encode()).hexdigest(), 16) % 8


def noisy_solve(question: str, sample_index: int = 0, hint=None):
    text = solve(question)
    bucket = _bucket(question)
    if hint is not None:  # STaR: with the answer given, it writes the right solution
        return text
    if bucket in (0, 1):  # wrong on purpose
        body, answer = text.rsplit("#### ", 1)
        return f"{body}#### {int(answer) + 1}"
    if bucket == 2 and sample_index == 0:
        return text.split("\n#### ")[0]  # no final answer
    if bucket == 3 and sample_index == 0:
        return {"text": text.split("\n")[0], "finish_reason": "length"}
    return text
