"""The teacher interface and its prompt (YAML ``teacher_prompt_template``, ``teacher_few_shot``).

A teacher turns questions into rationales. Every backend answers the same call::

    teacher.generate(questions, n=4, temperature=0.7, max_new_tokens=256, hints=None)
    -> [[{"text": "... #### 42", "finish_reason": "stop"}, ...n...], ...per question...]

``finish_reason`` is ``stop`` or ``length`` (cut at ``max_new_tokens``); a sample the backend
could not produce has ``text: None`` and an ``error`` (never a made-up text). ``hints`` (STaR
rationalisation) carry a gold answer the prompt reveals.
"""

from __future__ import annotations

import hashlib
from typing import Optional

from fnsft.errors import ConfigError

DEFAULT_TEMPLATE = (
    "Solve the problem step by step. End with the final answer on its own line as '#### <answer>'.\n\n"
    "Question: {question}\nAnswer:"
)
HINT_SUFFIX = "\n(The correct final answer is {answer}. Explain step by step how to reach it; do not mention this hint.)"


def check_template(template: str, key: str) -> None:
    if "{question}" not in template:
        raise ConfigError(f"{key}: the template must contain {{question}} where the question goes")


def template_hash(template: str, few_shot: Optional[list] = None) -> str:
    """Short hash of the full prompt recipe (provenance and cache key)."""
    blob = template + "\x00" + repr(few_shot or [])
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]


class Teacher:
    """Base of the backends. Subclasses set ``kind``/``identity`` and implement :meth:`_complete`.

    Args:
        template: ``teacher_prompt_template``, with ``{question}``.
        few_shot: ``teacher_few_shot``: ``[{question, rationale}]`` worked examples put before
            the question, each rendered with the template and followed by its rationale.
    """

    kind = "base"
    batch_size = 8  # questions per generate() call the stage makes (and caches after)

    def __init__(self, template: str = DEFAULT_TEMPLATE, few_shot: Optional[list[dict]] = None):
        check_template(template, "teacher_prompt_template")
        self.template = template
        self.few_shot = list(few_shot or [])
        self.template_hash = template_hash(template, self.few_shot)

    @property
    def identity(self) -> str:
        """Who writes the rationales (model/function name, endpoint): provenance and cache key."""
        raise NotImplementedError

    def prompt(self, question: str, hint: Optional[str] = None) -> str:
        """The full prompt: few-shot examples, then the template around ``question`` (and a hint)."""
        shots = "".join(self.template.replace("{question}", s["question"]) + " " + s["rationale"].strip() + "\n\n"
                         for s in self.few_shot)
        text = question + (HINT_SUFFIX.replace("{answer}", str(hint)) if hint is not None else "")
        return shots + self.template.replace("{question}", text)

    def generate(self, questions: list[str], n: int = 1, temperature: float = 0.7, max_new_tokens: int = 256,
                 hints: Optional[list[Optional[str]]] = None) -> list[list[dict]]:
        """``n`` rationales per question (see the module docstring for the shape)."""
        hints = hints or [None] * len(questions)
        prompts = [self.prompt(q, h) for q, h in zip(questions, hints)]
        out = self._complete(prompts, questions, hints, n, temperature, max_new_tokens)
        assert len(out) == len(questions) and all(len(s) == n for s in out), "teacher returned the wrong shape"
        return out

    def _complete(self, prompts: list[str], questions: list[str], hints: list[Optional[str]], n: int,
                  temperature: float, max_new_tokens: int) -> list[list[dict]]:
        raise NotImplementedError

    def close(self) -> None:
        """Release actors/clients (the stage calls it when generation is done)."""
