"""Multi-step arithmetic word problems: templates, a generator and an exact solver.

Shared by ``make_problems.py`` (writes the train/eval jsonl) and ``teacher.py`` (the function
teacher that writes step-by-step solutions by parsing a question back into its template).
"""

from __future__ import annotations

import random
import re

NAMES = ["Tom", "Anna", "Ben", "Mia", "Sam", "Lily", "Max", "Zoe", "Leo", "Emma", "Noah", "Ava"]
ITEMS = ["apples", "pencils", "stickers", "marbles", "cookies", "books", "stamps", "shells"]

# (question template, solution steps) — steps are (text template, value expression) pairs.
TEMPLATES = [
    ("{name} has {a} boxes with {b} {item} in each box. {name} gives away {c} {item}. "
     "How many {item} does {name} have left?",
     [("{a} boxes x {b} {item} = {s1} {item}", "a*b"), ("{s1} - {c} = {s2} {item}", "s1-c")]),
    ("{name} buys {a} {item} for {b} dollars each and pays with a {c} dollar bill. "
     "How much change does {name} get?",
     [("{a} {item} x {b} dollars = {s1} dollars", "a*b"), ("{c} - {s1} = {s2} dollars", "c-s1")]),
    ("{name} reads {a} pages a day for {b} days, then reads {c} more pages. How many pages does {name} read in all?",
     [("{a} pages x {b} days = {s1} pages", "a*b"), ("{s1} + {c} = {s2} pages", "s1+c")]),
    ("A shop has {a} {item}. It sells {b} {item} in the morning and {c} {item} in the afternoon. "
     "How many {item} are left?",
     [("{a} - {b} = {s1} {item}", "a-b"), ("{s1} - {c} = {s2} {item}", "s1-c")]),
    ("{name} has {a} {item}. A friend has {b} times as many {item}. How many {item} do they have together?",
     [("{a} x {b} = {s1} {item}", "a*b"), ("{a} + {s1} = {s2} {item}", "a+s1")]),
]


def _numbers(kind: int, rng: random.Random) -> dict:
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    if kind == 1:  # the bill covers the price
        return {"a": a, "b": b, "c": a * b + rng.randint(1, 20)}
    if kind == 3:  # the stock covers both sales
        b, c = rng.randint(2, 15), rng.randint(2, 15)
        return {"a": b + c + rng.randint(1, 30), "b": b, "c": c}
    if kind == 0:
        return {"a": a, "b": b, "c": rng.randint(1, a * b - 1)}
    return {"a": a, "b": b, "c": rng.randint(2, 20)}


def solve_values(kind: int, values: dict) -> tuple[list[str], int]:
    """The worked steps and the answer of template ``kind`` with ``values``."""
    env = dict(values)
    lines = []
    for i, (text, expr) in enumerate(TEMPLATES[kind][1], start=1):
        env[f"s{i}"] = eval(expr, {}, dict(env))  # noqa: S307 - our own fixed expressions
        lines.append(f"Step {i}: " + text.format(**env))
    return lines, env[f"s{len(TEMPLATES[kind][1])}"]


def make_problem(rng: random.Random) -> dict:
    kind = rng.randrange(len(TEMPLATES))
    values = {**_numbers(kind, rng), "name": rng.choice(NAMES), "item": rng.choice(ITEMS)}
    question = TEMPLATES[kind][0].format(**values)
    lines, answer = solve_values(kind, values)
    return {"question": question, "answer": "\n".join(lines) + f"\n#### {answer}"}


def _pattern(template: str) -> re.Pattern:
    out, seen, pos = "", set(), 0
    for m in re.finditer(r"\{(\w+)\}", template):
        out += re.escape(template[pos:m.start()])
        name = m.group(1)
        if name in seen:
            out += f"(?P={name})"
        else:
            seen.add(name)
            out += {"name": r"(?P<name>[A-Z][a-z]+)", "item": r"(?P<item>[a-z]+)"}.get(name, rf"(?P<{name}>\d+)")
        pos = m.end()
    return re.compile(out + re.escape(template[pos:]) + "$")


_PATTERNS = [_pattern(t) for t, _ in TEMPLATES]


def parse_problem(question: str):
    """``(kind, values)`` of a generated question, or ``None`` if it fits no template."""
    for kind, pattern in enumerate(_PATTERNS):
        m = pattern.match(question.strip())
        if m:
            values = {k: (int(v) if v.isdigit() else v) for k, v in m.groupdict().items()}
            return kind, values
    return None
