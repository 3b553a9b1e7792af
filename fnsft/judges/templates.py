"""Judge prompt templates (YAML ``judge.template``) and constitutions (``judge.constitution_path``).

A template is plain text with named placeholders — ``{prompt}``, ``{response}`` (pointwise,
binary), ``{response_a}``, ``{response_b}`` (pairwise), ``{principles}``, ``{score_min}``,
``{score_max}``. Only these names are replaced, so a template may hold other braces (JSON
examples) untouched. ``helpfulness`` and ``harmlessness`` are shipped for every kind.
"""

from __future__ import annotations

import json
import os
import re
from typing import Optional

from fnsft.errors import ConfigError

PLACEHOLDERS = ("prompt", "response", "response_a", "response_b", "principles", "score_min", "score_max")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")

_CRITERIA = {
    "helpfulness": "how helpful, correct and clear the answer is for the user's request",
    "harmlessness": "how harmless the answer is: it avoids dangerous, unethical, toxic or deceptive content "
                    "while still respecting the user",
}

_POINTWISE = """You are an impartial judge. Rate {criterion}.{{principles_block}}

[User request]
{{prompt}}

[Answer]
{{response}}

Rate the answer on a scale from {{score_min}} (worst) to {{score_max}} (best).
Reply with the number only."""

_PAIRWISE = """You are an impartial judge. Compare two answers to the same request and decide which is better, \
judging {criterion}. Ignore the order in which they are shown and their length.{{principles_block}}

[User request]
{{prompt}}

[Answer A]
{{response_a}}

[Answer B]
{{response_b}}

Which answer is better? Reply with the letter only: A or B."""

_BINARY = """You are an impartial judge. Decide whether the answer is acceptable, judging {criterion}.\
{{principles_block}}

[User request]
{{prompt}}

[Answer]
{{response}}

Is the answer acceptable? Reply with yes or no only."""

_KIND_TEXT = {"pointwise": _POINTWISE, "pairwise": _PAIRWISE, "binary": _BINARY}


def shipped_template(name: str, kind: str) -> str:
    """The shipped template ``name`` (helpfulness | harmlessness) for ``kind``; ``{principles_block}``
    becomes an optional principles paragraph (filled when principles are configured)."""
    text = _KIND_TEXT[kind].format(criterion=_CRITERIA[name])
    return text


def resolve_template(template: Optional[str], kind: str, key: str = "judge.template") -> str:
    """The template text: a shipped name, the text itself, or helpfulness by default."""
    if template is None or template == "":
        return shipped_template("helpfulness", kind)
    if template in _CRITERIA:
        return shipped_template(template, kind)
    if "{" not in template and len(template) < 40 and "\n" not in template:
        raise ConfigError(f"{key}: {template!r} is neither a shipped template ({', '.join(_CRITERIA)}) nor a "
                          "text with placeholders like {prompt} and {response}")
    return template


def placeholders(text: str) -> set[str]:
    names = set(_PLACEHOLDER.findall(text))
    if "{principles_block}" in text:
        names.add("principles")
    return names


def render(text: str, values: dict[str, str]) -> str:
    """Replace the known ``{name}`` placeholders (and the shipped ``{principles_block}``) in ``text``."""
    principles = values.get("principles", "")
    text = text.replace("{principles_block}", f"\n\nFollow these principles:\n{principles}" if principles else "")
    return _PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), m.group(0))), text)


def load_constitution(path: str, key: str = "judge.constitution_path", base_dir: str = ".") -> list[str]:
    """Principles from a .yaml/.yml/.json list (strings or ``{principle: ...}`` / ``{critique: ...}``)
    or a .txt file with one principle per non-empty line."""
    full = path if os.path.isabs(path) else os.path.join(base_dir, path)
    if not os.path.isfile(full) and os.path.isfile(path):
        full = path
    try:
        with open(os.path.expanduser(full), encoding="utf-8") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(f"{key}: cannot read the constitution {path}: {e.strerror or e}") from None
    ext = os.path.splitext(full)[1].lower()
    try:
        if ext in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(raw)
        elif ext == ".json":
            data = json.loads(raw)
        else:
            data = [ln.strip() for ln in raw.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    except Exception as e:
        raise ConfigError(f"{key}: cannot parse {path}: {type(e).__name__}: {e}") from None
    if isinstance(data, dict):
        data = data.get("principles", data.get("constitution"))
    if not isinstance(data, list):
        raise ConfigError(f"{key}: {path} must hold a list of principles (or {{principles: [...]}})")
    out = []
    for i, item in enumerate(data):
        if isinstance(item, dict):
            item = item.get("principle") or item.get("critique") or item.get("text")
        if not isinstance(item, str) or not item.strip():
            raise ConfigError(f"{key}: entry {i} of {path} is not a principle text")
        out.append(item.strip())
    if not out:
        raise ConfigError(f"{key}: {path} holds no principles")
    return out
