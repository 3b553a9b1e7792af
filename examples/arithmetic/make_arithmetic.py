"""Write train.jsonl and eval.jsonl here: small arithmetic questions for RL (GRPO) examples.

Each row is ``{"prompt": "What is 7 + 5? Answer with just the number.", "answer": "12"}``; a
reward function compares the model's number to ``answer``. Deterministic (seeded); run from
anywhere: ``python examples/arithmetic/make_arithmetic.py``. Eval questions never repeat a
train question.
"""

from __future__ import annotations

import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
N_TRAIN = 400
N_EVAL = 50


def question(rng: random.Random) -> tuple[str, int]:
    """One question and its integer answer; results stay small and non-negative."""
    op = rng.choice("+-×÷")
    if op == "+":
        a, b = rng.randint(0, 50), rng.randint(0, 50)
        return f"{a} + {b}", a + b
    if op == "-":
        a = rng.randint(0, 60)
        b = rng.randint(0, a)
        return f"{a} - {b}", a - b
    if op == "×":
        a, b = rng.randint(1, 12), rng.randint(1, 12)
        return f"{a} × {b}", a * b
    b, q = rng.randint(1, 12), rng.randint(1, 12)
    return f"{b * q} ÷ {b}", q


def make(seed: int = 0) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    seen: set[str] = set()
    rows: list[dict] = []
    while len(rows) < N_TRAIN + N_EVAL:
        expr, answer = question(rng)
        if expr in seen:
            continue
        seen.add(expr)
        rows.append({"prompt": f"What is {expr}? Answer with just the number.", "answer": str(answer)})
    return rows[:N_TRAIN], rows[N_TRAIN:]


def _write(path: str, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    train, eval_rows = make()
    _write(os.path.join(HERE, "train.jsonl"), train)
    _write(os.path.join(HERE, "eval.jsonl"), eval_rows)
    print(f"wrote {len(train)} train and {len(eval_rows)} eval rows to {HERE}")


if __name__ == "__main__":
    main()
