"""A very easy reasoning task for the tiny model: how many legs an animal has (tests only).

``make(path, n, seed)`` writes questions with gold answers; ``solve`` is the function teacher.
"""

import json
import random

LEGS = {"cat": 4, "bird": 2, "spider": 8, "fish": 0}
NAMES = ["Tom", "Anna", "Ben", "Mia", "Sam", "Lily", "Max", "Zoe", "Leo", "Emma", "Noah", "Ava", "Ida", "Kai"]


def make(path, n, seed):
    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(n):
            animal = rng.choice(sorted(LEGS))
            q = f"{rng.choice(NAMES)} has a {animal}. How many legs does the {animal} have?"
            f.write(json.dumps({"question": q, "answer": str(LEGS[animal])}) + "\n")


def solve(question):
    animal = next(a for a in LEGS if f" {a}." in question)
    return f"A {animal} has {LEGS[animal]} legs.\n#### {LEGS[animal]}"
