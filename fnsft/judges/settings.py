"""``judge:`` — how an AI judge is configured (RLAIF's reward, CoT filtering, the run report).

YAML (under a stage, e.g. ``stage_configs.rlaif.judge``)::

    judge:
      type: local                 # local | api | function
      kind: pointwise             # pointwise | pairwise | binary
      template: helpfulness       # a shipped name (helpfulness, harmlessness) or your own text
      score_range: [1, 9]         # pointwise scale
      principles: []              # or constitution_path: my_principles.yaml
      principle_sampling: one     # one (sampled per judgement) | all
      position_debias: both_orders   # pairwise: both_orders | random | none
      model_name_or_path: builtin:smollm2-135m-instruct   # local
      num_replicas: 1
      num_cpus: 1
      function: my_pkg.judges:score   # function ("module:fn" or "file.py:fn")
      api: {model: gpt-4o-mini, base_url: null, api_key_env: OPENAI_API_KEY}   # api
      max_judge_calls: 0          # 0: no cap
      max_masked_share: 0.5       # fail the stage when more judgements than this are masked (1: never)

:func:`check_judge_settings` turns every mistake into a one-line :class:`ConfigError` naming the
key; it imports no torch/ray (it runs in ``--dry_run``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

from fnsft.errors import ConfigError

JUDGE_TYPES = ("local", "api", "function")
JUDGE_KINDS = ("pointwise", "pairwise", "binary")
DEBIAS = ("both_orders", "random", "none")
SAMPLING = ("one", "all")


@dataclass
class JudgeSettings:
    """One AI judge (YAML ``judge:``): backend, kind, template, principles, budget."""

    type: str = field(default="local", metadata={"help": "local (HF causal LM actors) | api (OpenAI-compatible) | "
                                                         "function (a Python callable)."})
    kind: str = field(default="pointwise", metadata={"help": "pointwise (a score on score_range) | pairwise (which "
                                                             "of two is better) | binary (yes/no rubric)."})
    template: Optional[str] = field(
        default=None, metadata={"help": "Judge prompt: a shipped name (helpfulness, harmlessness) or a text with "
                                        "{prompt} {response} (pointwise/binary), {response_a} {response_b} "
                                        "(pairwise), {principles}, {score_min} {score_max}. Default: helpfulness."})
    score_range: list[int] = field(default_factory=lambda: [1, 10],
                                   metadata={"help": "pointwise: [low, high] of the integer scale."})
    principles: list[str] = field(default_factory=list,
                                  metadata={"help": "Constitution principles written into {principles}."})
    constitution_path: Optional[str] = field(
        default=None, metadata={"help": "A .yaml/.json list of principles or a .txt with one per line."})
    principle_sampling: str = field(default="one", metadata={"help": "one: a principle sampled per judgement "
                                                                     "(Constitutional AI); all: every principle."})
    position_debias: str = field(
        default="both_orders", metadata={"help": "pairwise: both_orders (ask A/B and B/A, average) | random "
                                                 "(one order, chosen per item) | none."})
    model_name_or_path: Optional[str] = field(
        default=None, metadata={"help": "local: a HF causal LM (folder, hub id or builtin:); default the stage's "
                                        "input model."})
    num_replicas: int = field(default=1, metadata={"help": "local: judge actors."})
    num_cpus: float = field(default=1.0, metadata={"help": "local: CPUs per judge actor."})
    num_gpus: float = field(default=0.0, metadata={"help": "local: GPUs per judge actor."})
    batch_size: int = field(default=16, metadata={"help": "local: judge prompts per forward pass."})
    max_length: int = field(default=1024, metadata={"help": "local: judge prompt length limit (tokens, left-cut)."})
    function: Optional[str] = field(
        default=None, metadata={"help": "function: 'module:fn' or 'path/file.py:fn'; called fn(prompt, response) "
                                        "or fn(prompt, response_a, response_b); returns a number, a reply text "
                                        "to parse, or None (masked)."})
    api: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "api: the OpenAI-compatible client settings (model, base_url, "
                                                "api_key_env, max_concurrency, requests_per_minute, max_retries, "
                                                "timeout_s, extra_body)."})
    max_tokens: int = field(default=8, metadata={"help": "api: reply length limit (the verdict comes first)."})
    top_logprobs: int = field(default=10, metadata={"help": "api: alternatives per token asked for (0: parse the "
                                                            "text only)."})
    max_judge_calls: int = field(default=0, metadata={"help": "Stop loudly after this many judge calls (0: no cap); "
                                                              "cached judgements are free."})
    seed: int = field(default=0, metadata={"help": "Principle sampling and random position order."})
    max_masked_share: float = field(
        default=0.5, metadata={"help": "Fail the stage in one line when more than this share of a scoring batch's "
                                       "(or the whole stage's) judgements is masked (failed calls, unparsed or "
                                       "empty replies): a judge outage must not train on nothing. In (0, 1]; "
                                       "1: never."})


MAX_SCORE_SPAN = 100  # judge.score_range: high - low


def check_judge_settings(s: JudgeSettings, key: str = "judge", base_dir: str = ".") -> None:
    """Raise a one-line :class:`ConfigError` naming ``key.<field>`` for any bad setting (no torch/ray)."""
    from fnsft.config.parse import did_you_mean
    from fnsft.judges.templates import load_constitution, placeholders, resolve_template

    if s.type not in JUDGE_TYPES:
        raise ConfigError(f"{key}.type: unknown judge type {s.type!r}{did_you_mean(s.type, JUDGE_TYPES)} "
                          f"(accepted: {', '.join(JUDGE_TYPES)})")
    if s.kind not in JUDGE_KINDS:
        raise ConfigError(f"{key}.kind: unknown judge kind {s.kind!r}{did_you_mean(s.kind, JUDGE_KINDS)} "
                          f"(accepted: {', '.join(JUDGE_KINDS)})")
    if s.position_debias not in DEBIAS:
        raise ConfigError(f"{key}.position_debias: {s.position_debias!r} is not accepted ({', '.join(DEBIAS)})")
    if s.principle_sampling not in SAMPLING:
        raise ConfigError(f"{key}.principle_sampling: {s.principle_sampling!r} is not accepted ({', '.join(SAMPLING)})")
    if len(s.score_range) != 2:
        raise ConfigError(f"{key}.score_range: give [low, high], e.g. [1, 10] (got {s.score_range})")
    if s.score_range[0] >= s.score_range[1]:
        raise ConfigError(f"{key}.score_range: low must be below high (got {s.score_range}; e.g. [1, 10])")
    if s.score_range[1] - s.score_range[0] > MAX_SCORE_SPAN:
        # A judge reads the scale from the prompt and answers one number; past ~100 steps neither a
        # model nor the log-prob parser (one token per score) can use it.
        raise ConfigError(f"{key}.score_range: at most {MAX_SCORE_SPAN} apart (got {s.score_range}; e.g. [1, 10])")
    if s.constitution_path:
        load_constitution(s.constitution_path, f"{key}.constitution_path", base_dir)
    uses_principles = bool(s.principles or s.constitution_path)
    if s.type != "function":
        text = resolve_template(s.template, s.kind, f"{key}.template")
        need = {"pointwise": {"prompt", "response"}, "binary": {"prompt", "response"},
                "pairwise": {"prompt", "response_a", "response_b"}}[s.kind]
        if uses_principles:
            need = need | {"principles"}
        missing = sorted(need - placeholders(text))
        if missing:
            raise ConfigError(f"{key}.template: a {s.kind} template needs "
                              + ", ".join("{" + m + "}" for m in missing)
                              + (" (principles are set)" if "principles" in missing else ""))
    for name in ("num_replicas", "batch_size", "max_length", "max_tokens"):
        if getattr(s, name) < 1:
            raise ConfigError(f"{key}.{name}: must be >= 1 (got {getattr(s, name)})")
    if s.max_judge_calls < 0:
        raise ConfigError(f"{key}.max_judge_calls: must be >= 0 (0: no cap; got {s.max_judge_calls})")
    share = s.max_masked_share
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
        raise ConfigError(f"{key}.max_masked_share: {share!r} must be a share in (0, 1] (e.g. 0.5; 1: never stop)")
    if s.type == "function":
        if not s.function:
            raise ConfigError(f"{key}.function: a function judge needs 'module:fn' or 'path/file.py:fn'")
        from fnsft.rl.rewards import load_function

        load_function(s.function, f"{key}.function")
    elif s.type == "local":
        if s.model_name_or_path and not s.model_name_or_path.startswith("builtin:"):
            path = os.path.expanduser(s.model_name_or_path)
            looks_local = path.startswith((".", "/", "~")) or os.path.isdir(path)
            if looks_local and not os.path.isfile(os.path.join(path, "config.json")):
                raise ConfigError(f"{key}.model_name_or_path: {s.model_name_or_path} is not a model folder "
                                  "(no config.json)")
    elif s.type == "api":
        check_api_block(s, f"{key}.api")


def api_settings(s: JudgeSettings, key: str = "judge.api"):
    """The ``api:`` block as the shared client's ``ApiSettings`` (one-line error on bad keys)."""
    try:
        from fnsft.actors.api_settings import ApiSettings
    except ImportError:
        raise ConfigError(f"{key}: this build has no API client (fnsft.actors.api_settings)") from None
    from fnsft.config.parse import parse_dataclass

    return parse_dataclass(ApiSettings, s.api, key)


def check_api_block(s: JudgeSettings, key: str) -> None:
    from fnsft.actors.api_settings import check_api_settings

    check_api_settings(api_settings(s, key), key)
