"""Reward functions for the RL stages: built-in rules, user functions, and their weighted sum.

Every reward function has TRL's signature::

    fn(prompts: list, completions: list[str], **columns) -> list[float | None]

``columns`` are the dataset's extra columns (e.g. ``answer``), one list entry per completion,
plus ``completion_ids``. ``None`` means "no opinion" and counts as 0 in the sum.

YAML (``stage_configs.rl.rewards``), a list of weighted terms::

    rewards:
      - {type: exact_match, column: answer, extract: last_number, weight: 1.0}
      - {type: regex, pattern: '^\\s*-?\\d+\\s*$', weight: 0.2}     # format reward
      - {type: length_penalty, target_length: 16, unit: tokens, weight: 0.1}
      - {type: target_chars, chars: "the"}        # dense toy reward (tests)
      - {type: function, function: my_pkg.rewards:score}        # or path/to/file.py:score
      - {type: model, path: ./my_reward_model}                 # sequence-classification model

Rule rewards are plain Python (no torch) so they run anywhere: in the reward actor, in a
test, in TRL. The ``model`` type is scored by :class:`fnsft.actors.reward.RewardActor`.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional

from fnsft.errors import ConfigError
from fnsft.utils.pyfile import import_file, looks_like_file, module_name

RewardFn = Callable[..., list]

REWARD_TYPES = ("exact_match", "regex", "length_penalty", "target_chars", "target_word", "function", "model")


@dataclass
class RewardSpec:
    """One weighted term of the reward (an entry of ``rl.rewards``)."""

    type: Literal["exact_match", "regex", "length_penalty", "target_chars", "target_word", "function", "model"] = field(
        metadata={"help": "exact_match | regex | length_penalty | target_chars | target_word | function | model."})
    weight: float = field(default=1.0, metadata={"help": "Weight of this term in the summed reward."})
    name: Optional[str] = field(default=None, metadata={"help": "Name in the metrics (default: the type)."})
    column: str = field(default="answer", metadata={"help": "exact_match: the dataset column with the answer."})
    extract: Literal["strip", "last_number", "first_line"] = field(
        default="strip",
        metadata={"help": "exact_match: compare the whole stripped completion, its last number, or its first line."})
    pattern: Optional[str] = field(default=None, metadata={"help": "regex: the pattern a good completion matches."})
    full_match: bool = field(default=False, metadata={"help": "regex: the whole completion must match (else search)."})
    target_length: int = field(default=32, metadata={"help": "length_penalty: lengths above this are penalised."})
    unit: Literal["tokens", "chars"] = field(default="tokens", metadata={"help": "length_penalty: count tokens or characters."})
    chars: Optional[str] = field(
        default=None, metadata={"help": "target_chars: reward = share of the completion's non-space characters in this set."})
    word: Optional[str] = field(
        default=None, metadata={"help": "target_word: reward = share of the completion's words equal to this word."})
    function: Optional[str] = field(
        default=None, metadata={"help": "function: 'module:function', 'path/file.py:function' or 'path/file.py' (uses reward)."})
    path: Optional[str] = field(default=None, metadata={"help": "model: a sequence-classification model directory."})
    kwargs: dict[str, Any] = field(default_factory=dict, metadata={"help": "function: extra keyword arguments."})
    timeout_s: float = field(
        default=30.0, metadata={"help": "Most seconds this term may take per batch (rules and functions; they run in "
                                        "a process of their own): rows not scored by then fail and leave the update."})

    @property
    def label(self) -> str:
        return self.name or self.type


# Built-in rules ------------------------------------------------------------------------
_NUMBER = re.compile(r"-?\d+(?:[.,]\d+)?")


def _normalise(text: str) -> str:
    return " ".join(str(text).strip().rstrip(".").split()).lower()


def extract_answer(completion: str, how: str = "strip") -> str:
    """The part of a completion that ``exact_match`` compares: stripped text, last number, first line."""
    if how == "last_number":
        numbers = _NUMBER.findall(completion.replace(",", ""))
        return numbers[-1] if numbers else ""
    if how == "first_line":
        lines = [ln for ln in completion.strip().splitlines() if ln.strip()]
        return _normalise(lines[0]) if lines else ""
    return _normalise(completion)


def exact_match(prompts, completions, column: str = "answer", extract: str = "strip", **columns) -> list[float]:
    """1.0 where the completion's answer equals the ``column`` value (case/space-insensitive)."""
    if column not in columns:
        raise ConfigError(f"exact_match reward: the dataset has no column {column!r}; columns: {', '.join(sorted(columns))}")
    out = []
    for completion, answer in zip(completions, columns[column]):
        got = extract_answer(completion, extract)
        want = extract_answer(str(answer), extract) if extract != "last_number" else str(answer).strip()
        if extract == "last_number":
            try:
                out.append(float(float(got) == float(want)) if got else 0.0)
            except ValueError:
                out.append(float(got == want))
        else:
            out.append(float(got == want))
    return out


def regex_match(prompts, completions, pattern: str, full_match: bool = False, **_) -> list[float]:
    """1.0 where the completion matches ``pattern`` (``re.search``; ``re.fullmatch`` with full_match)."""
    rx = re.compile(pattern, re.DOTALL)
    test = rx.fullmatch if full_match else rx.search
    return [float(test(c) is not None) for c in completions]


def length_penalty(prompts, completions, target_length: int = 32, unit: str = "tokens",
                   completion_ids=None, **_) -> list[float]:
    """``-max(0, length - target) / target``: 0 up to the target, then more negative per extra unit."""
    lengths = [len(ids) for ids in completion_ids] if unit == "tokens" and completion_ids is not None \
        else [len(c) for c in completions]
    return [-max(0, n - target_length) / max(target_length, 1) for n in lengths]


def target_chars(prompts, completions, chars: str, **_) -> list[float]:
    """Share of the completion's non-space characters that are in ``chars`` (0 for an empty one).

    A dense reward: every token moves it a little, which is what a tiny model needs to show
    learning within tens of iterations (FACTS.md: sparse rewards do not move in 40 steps).
    """
    wanted = set(chars)
    out = []
    for c in completions:
        letters = [ch for ch in c if not ch.isspace()]
        out.append(sum(ch in wanted for ch in letters) / len(letters) if letters else 0.0)
    return out


def target_word(prompts, completions, word: str, **_) -> list[float]:
    """Share of the completion's whitespace-separated words equal to ``word``."""
    out = []
    for c in completions:
        words = c.split()
        out.append(sum(w.strip(".,!?") == word for w in words) / len(words) if words else 0.0)
    return out


# Loading user functions ------------------------------------------------------------------
def load_function(ref: str, key: str = "function") -> RewardFn:
    """Import ``module:function``, ``path/to/file.py:function`` or ``path/to/file.py`` (its ``reward``).

    Raises :class:`ConfigError` naming ``key`` when it cannot be imported or is not callable.
    """
    if not ref or not isinstance(ref, str):
        raise ConfigError(f"{key}: give 'module:function' or 'path/to/file.py:function'")
    target, _, attr = ref.rpartition(":") if ":" in ref else (ref, "", "")
    if looks_like_file(target):
        path = os.path.abspath(os.path.expanduser(target))
        if not os.path.isfile(path):
            raise ConfigError(f"{key}: reward file {target} not found")
        attr = attr or "reward"
        module = import_file(path, module_name("fnsft_reward_", path), key, target)
    else:
        if not attr:
            raise ConfigError(f"{key}: {ref!r} names no function; write 'module:function'")
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as e:
            raise ConfigError(f"{key}: module {target!r} not found ({e}); give 'module:function' on the "
                              "Python path or 'path/to/file.py:function'") from None
        except Exception as e:
            raise ConfigError(f"{key}: importing {target} failed: {type(e).__name__}: {e}") from None
    fn = getattr(module, attr, None)
    if fn is None:
        raise ConfigError(f"{key}: {target} has no function {attr!r}")
    if not callable(fn):
        raise ConfigError(f"{key}: {target}:{attr} is not callable")
    return fn


def _accepts(fn: Callable) -> tuple[bool, set[str]]:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True, set()
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
    return var_kw, {p.name for p in params}


def call_reward(fn: RewardFn, prompts: list, completions: list[str], columns: dict[str, list],
                fixed: Optional[dict] = None, label: str = "reward") -> list[float]:
    """Call a TRL-style reward function with only the keyword arguments it accepts."""
    kwargs = {**columns, **(fixed or {})}
    var_kw, names = _accepts(fn)
    if not var_kw:
        kwargs = {k: v for k, v in kwargs.items() if k in names}
    out = fn(prompts=prompts, completions=completions, **kwargs)
    out = list(out)
    if len(out) != len(completions):
        raise ValueError(f"reward {label} returned {len(out)} values for {len(completions)} completions")
    return [0.0 if v is None else float(v) for v in out]


# Building the list -----------------------------------------------------------------------
def parse_reward_specs(entries: list[dict], key: str) -> list[RewardSpec]:
    """Typed :class:`RewardSpec` per ``rl.rewards`` entry, each checked (functions imported)."""
    from fnsft.config.parse import parse_dataclass

    if not entries:
        raise ConfigError(f"{key}: no reward given; add e.g. "
                          "rewards: [{type: exact_match, column: answer}] or {type: function, function: module:fn}")
    specs = []
    for i, entry in enumerate(entries):
        k = f"{key}[{i}]"
        if isinstance(entry, RewardSpec):
            spec = entry
        elif isinstance(entry, dict):
            if "type" not in entry:
                raise ConfigError(f"{k}.type: required key is missing; one of {', '.join(REWARD_TYPES)}")
            spec = parse_dataclass(RewardSpec, entry, k)
        else:
            raise ConfigError(f"{k}: expected a mapping like {{type: exact_match, weight: 1.0}}, got {entry!r}")
        check_reward_spec(spec, k)
        specs.append(spec)
    labels = [s.label for s in specs]
    dupes = {x for x in labels if labels.count(x) > 1}
    if dupes:
        raise ConfigError(f"{key}: several rewards are called {', '.join(sorted(dupes))}; give each a distinct name:")
    return specs


def check_reward_spec(spec: RewardSpec, key: str) -> None:
    if spec.type == "regex":
        if not spec.pattern:
            raise ConfigError(f"{key}.pattern: a regex reward needs a pattern")
        try:
            re.compile(spec.pattern)
        except re.error as e:
            raise ConfigError(f"{key}.pattern: invalid regular expression: {e}") from None
    elif spec.type == "target_chars" and not spec.chars:
        raise ConfigError(f"{key}.chars: a target_chars reward needs the characters to reward")
    elif spec.type == "target_word" and not spec.word:
        raise ConfigError(f"{key}.word: a target_word reward needs the word to reward")
    elif spec.type == "length_penalty" and spec.target_length < 1:
        raise ConfigError(f"{key}.target_length: must be >= 1 (got {spec.target_length})")
    elif spec.type == "function":
        load_function(spec.function, f"{key}.function")
    elif spec.type == "model":
        if not spec.path:
            raise ConfigError(f"{key}.path: a model reward needs a sequence-classification model directory")
        if not os.path.isfile(os.path.join(os.path.expanduser(spec.path), "config.json")):
            raise ConfigError(f"{key}.path: {spec.path} is not a model directory (no config.json)")


def rule_function(spec: RewardSpec) -> tuple[RewardFn, dict]:
    """The Python function and fixed keyword arguments for a non-model spec."""
    if spec.type == "exact_match":
        return exact_match, {"column": spec.column, "extract": spec.extract}
    if spec.type == "regex":
        return regex_match, {"pattern": spec.pattern, "full_match": spec.full_match}
    if spec.type == "length_penalty":
        return length_penalty, {"target_length": spec.target_length, "unit": spec.unit}
    if spec.type == "target_chars":
        return target_chars, {"chars": spec.chars}
    if spec.type == "target_word":
        return target_word, {"word": spec.word}
    if spec.type == "function":
        return load_function(spec.function), dict(spec.kwargs)
    raise ValueError(f"{spec.type} is not a rule reward")


def weighted_sum(components: dict[str, list[float]], weights: dict[str, float]) -> list[float]:
    """``sum_i weight_i * component_i`` per completion."""
    names = list(components)
    n = len(components[names[0]]) if names else 0
    return [sum(weights[k] * components[k][j] for k in names) for j in range(n)]
