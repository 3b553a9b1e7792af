"""Procedural task sets as a dataset source: ``dataset_name_or_path: reasoning_gym:<task>``.

`reasoning-gym <https://github.com/open-thought/reasoning-gym>`_ generates reasoning tasks
(arithmetic, algebra, logic, games, ...) from a seed, offline, each with its own scorer. A spec
``reasoning_gym:basic_arithmetic?size=500&seed=0&num_terms=2`` names the task, how many rows
(``size``, default 500), the ``seed`` (default 0) and the task's own settings (numbers are
read as numbers). Each row is ``{"prompt": question, "answer": answer, "reasoning_gym": the
entry as JSON}``; the reward term ``{type: function, function:
fnsft.data.procedural:reasoning_gym_score}`` scores a completion with the task's scorer.
Install with ``pip install 'fnsft[envs]'``.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

from fnsft.errors import ConfigError

PREFIX = "reasoning_gym:"
ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def is_procedural(spec: Any) -> bool:
    return isinstance(spec, str) and spec.startswith(PREFIX)


def _parse(spec: str) -> tuple[str, int, int, dict[str, Any]]:
    task, _, query = spec[len(PREFIX):].partition("?")
    options: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    size, seed = options.pop("size", 500), options.pop("seed", 0)
    if not task or not isinstance(size, int) or size < 1 or not isinstance(seed, int):
        raise ConfigError(f"dataset {spec}: write reasoning_gym:<task>?size=<rows>&seed=<int>[&<task option>=...]")
    return task, size, seed, options


def procedural_rows(spec: str, limit: int = 0) -> list[dict[str, Any]]:
    """The rows ``spec`` generates (the first ``limit`` only, when > 0): same seed, same rows."""
    try:
        import reasoning_gym
    except ImportError:
        raise ConfigError(f"dataset {spec}: reasoning-gym is not installed; pip install 'fnsft[envs]'") from None
    task, size, seed, options = _parse(spec)
    try:
        data = reasoning_gym.create_dataset(task, size=size, seed=seed, **options)
    except Exception as e:
        raise ConfigError(f"dataset {spec}: reasoning-gym cannot make {task!r}: {type(e).__name__}: {e}") from None
    n = min(limit, size) if limit > 0 else size
    return [{"prompt": e["question"], "answer": str(e["answer"]),
             "reasoning_gym": json.dumps({"task": task, "entry": e}, default=str)} for e in (data[i] for i in range(n))]


def extract_answer(completion: str) -> str:
    """The answer in a completion: inside the last ``<answer>`` tags (reasoning-gym's
    convention), else its last non-empty line."""
    tagged = ANSWER_TAG.findall(completion or "")
    if tagged:
        return tagged[-1].strip()
    lines = [ln.strip() for ln in (completion or "").splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def reasoning_gym_score(prompts, completions, reasoning_gym, **_) -> list[float]:
    """Reward function: each completion scored by its task's own scorer (0..1)."""
    import reasoning_gym as rg

    out = []
    for completion, cell in zip(completions, reasoning_gym):
        item = json.loads(cell)
        score = rg.get_score_answer_fn(item["task"])
        try:
            out.append(float(score(answer=extract_answer(completion), entry=item["entry"])))
        except Exception:  # a scorer that cannot read the answer: wrong
            out.append(0.0)
    return out
