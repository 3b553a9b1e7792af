"""Write the shipped multi-step arithmetic word problems (GSM8K shape: ``answer`` ends in ``#### n``).

Also ``preferences.jsonl``: for the first 100 training questions, the right worked solution
(chosen) against one whose last step is off by one (rejected) — the DPO stage's data in
``configs/reasoning_pipeline.yaml``.

    python examples/reasoning/make_problems.py            # train.jsonl (400) + eval.jsonl (60), seed 0
    python examples/reasoning/make_problems.py --train 100 --eval 20 --out /tmp/x
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from problems import make_problem  # noqa: E402


def write(path: str, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=400)
    p.add_argument("--eval", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    a = p.parse_args()
    rng = random.Random(a.seed)
    seen, rows = set(), []
    while len(rows) < a.train + a.eval:  # no question in both splits
        r = make_problem(rng)
        if r["question"] not in seen:
            seen.add(r["question"])
            rows.append(r)
    os.makedirs(a.out, exist_ok=True)
    write(os.path.join(a.out, "train.jsonl"), rows[:a.train])
    write(os.path.join(a.out, "eval.jsonl"), rows[a.train:])
    prefs = []
    for r in rows[:min(100, a.train)]:
        body, answer = r["answer"].rsplit("#### ", 1)
        wrong = int(answer) + 1
        lines = body.strip().splitlines()
        lines[-1] = lines[-1].replace(f"= {answer} ", f"= {wrong} ")
        prefs.append({"prompt": r["question"], "chosen": r["answer"],
                      "rejected": "\n".join(lines) + f"\n#### {wrong}"})
    write(os.path.join(a.out, "preferences.jsonl"), prefs)
    print(f"wrote {a.train} train and {a.eval} eval problems to {a.out}")


if __name__ == "__main__":
    main()
