"""Final answers: take one out of a rationale and check it against the gold answer.

YAML (``stage_configs.cot_distillation``): ``answer_extraction`` picks how the answer is read
from a text — ``hash_marks`` (GSM8K's ``#### 42``, the default), ``boxed`` (``\\boxed{42}``),
``last_number`` or ``regex`` (``answer_regex``, its first group). ``numeric_tolerance`` is the
relative tolerance of numeric answers. Texts that are not numbers compare after
:func:`normalize_answer`; ``math-verify`` (when installed) gets the last word on expressions.
"""

from __future__ import annotations

import importlib.util
import math
import re
from fractions import Fraction
from typing import Optional

from fnsft.errors import ConfigError

EXTRACTIONS = ("hash_marks", "boxed", "last_number", "regex")

_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")
_HASH = re.compile(r"####\s*(.+)")
_LATEX_WRAP = re.compile(r"\\(?:text|mathrm|textbf)\{([^{}]*)\}")


def check_extraction(method: str, regex: Optional[str], key: str) -> None:
    """Validation of ``answer_extraction`` / ``answer_regex`` (one line naming the key)."""
    if method not in EXTRACTIONS:
        raise ConfigError(f"{key}.answer_extraction: unknown method '{method}' (accepted: {', '.join(EXTRACTIONS)})")
    if method == "regex":
        if not regex:
            raise ConfigError(f"{key}.answer_regex: answer_extraction 'regex' needs a pattern with one group")
        try:
            pattern = re.compile(regex)
        except re.error as e:
            raise ConfigError(f"{key}.answer_regex: not a valid regular expression ({e})") from None
        if pattern.groups < 1:
            raise ConfigError(f"{key}.answer_regex: the pattern needs a group around the answer, e.g. 'Answer: (.+)'")


def _last_boxed(text: str) -> Optional[str]:
    start = text.rfind("\\boxed")
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0:
        return None
    depth = 0
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1:j].strip()
    return None  # unbalanced: malformed


def extract_answer(text: str, method: str = "hash_marks", regex: Optional[str] = None) -> Optional[str]:
    """The final answer written in ``text`` by ``method``; ``None`` when there is none (malformed)."""
    if not text:
        return None
    if method == "hash_marks":
        found = _HASH.findall(text)
        answer = found[-1].strip() if found else None
    elif method == "boxed":
        answer = _last_boxed(text)
    elif method == "last_number":
        found = _NUMBER.findall(text)
        answer = found[-1] if found else None
    elif method == "regex":
        found = re.findall(regex or "", text)
        if not found:
            return None
        last = found[-1]
        answer = (last[0] if isinstance(last, tuple) else last).strip()
    else:
        raise ConfigError(f"answer_extraction: unknown method '{method}' (accepted: {', '.join(EXTRACTIONS)})")
    return answer or None


def gold_answer(value) -> Optional[str]:
    """The gold answer from a dataset cell: GSM8K's ``"... #### 42"`` -> ``42``, MATH's ``\\boxed{}``."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    if "####" in text:
        return extract_answer(text, "hash_marks")
    if "\\boxed" in text:
        return _last_boxed(text) or text
    return text


def normalize_answer(text: str) -> str:
    """Lower case, no LaTeX text wrappers, dollar signs, thousands commas, trailing dot or spaces."""
    s = _LATEX_WRAP.sub(r"\1", str(text)).strip().lower()
    s = s.replace("$", "").replace("\\!", "").replace("\\%", "%")
    s = re.sub(r"(?<=\d),(?=\d{3}\b)", "", s)
    s = re.sub(r"\s+", " ", s).strip().rstrip(".").strip()
    return s


def parse_number(text: str) -> Optional[float]:
    """A number from an answer string (``1,234``, ``$5``, ``-3.5``, ``3/4``, ``50%``); ``None`` if it is not one."""
    s = normalize_answer(text).replace(" ", "")
    for unit in ("%", "dollars", "units"):
        if s.endswith(unit):
            s = s[: -len(unit)]
    if re.fullmatch(r"-?\d+(\.\d+)?|-?\.\d+", s):
        return float(s)
    m = re.fullmatch(r"(-?\d+)/(\d+)", s) or re.fullmatch(r"\\d?frac\{(-?\d+)\}\{(\d+)\}", s)
    if m and int(m.group(2)) != 0:
        return float(Fraction(int(m.group(1)), int(m.group(2))))
    return None


def _math_verify(pred: str, gold: str) -> Optional[bool]:
    if importlib.util.find_spec("math_verify") is None:
        return None
    try:
        from math_verify import parse, verify

        return bool(verify(parse(gold), parse(pred)))
    except Exception:  # its parser rejects plain words: fall back to text comparison
        return None


def answers_match(pred: Optional[str], gold: Optional[str], rel_tol: float = 1e-4) -> bool:
    """Does ``pred`` state the same answer as ``gold``? Numbers within ``rel_tol``, else normalised text."""
    if pred is None or gold is None:
        return False
    a, b = parse_number(pred), parse_number(gold)
    if a is not None and b is not None:
        return math.isclose(a, b, rel_tol=rel_tol, abs_tol=1e-9)
    if normalize_answer(pred) == normalize_answer(gold):
        return True
    verdict = _math_verify(pred, gold)
    return bool(verdict)


def answer_key(answer: Optional[str]) -> Optional[str]:
    """A canonical form for voting (self-consistency): numbers as numbers, else normalised text."""
    if answer is None:
        return None
    number = parse_number(answer)
    if number is not None:
        return repr(round(number, 6))
    return normalize_answer(answer)
