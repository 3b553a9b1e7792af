"""The GRPO family's shared knobs, resolved once from the RL config: defaults, old keys, contradictions.

The YAML keys take TRL's names where TRL has them (``epsilon``, ``epsilon_high``,
``scale_rewards``, ``importance_sampling_level``, ``mask_truncated_completions``) and veRL's
``loss_agg_mode``. Each algorithm of the family brings its own defaults
(:attr:`fnsft.rl.algorithms.AlgoSpec.defaults`: DAPO's clip-higher 0.28, GSPO's sequence ratio and
tiny clip, Dr. GRPO's unscaled rewards); a value the user gave wins. The older keys keep their
meaning: ``clip_range`` is ``epsilon`` (TRL's name for it), ``loss_agg: sequence`` is
``loss_agg_mode: seq_mean_token_mean``; both given with different values is one
:class:`~fnsft.errors.ConfigError` line. :func:`resolve_knobs` runs in ``validate_config`` (before
Ray) and again in the Train worker, so both read the same values. No torch here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from fnsft.errors import ConfigError
from fnsft.rl.algorithms import ALGORITHMS

LOSS_AGG_MODES = ("token_mean", "seq_mean_token_sum", "seq_mean_token_mean")
SCALE_REWARDS = ("group", "batch", "none")
IMPORTANCE_SAMPLING_LEVELS = ("token", "sequence")


@dataclass(frozen=True)
class AlgoKnobs:
    """The resolved knobs (see docs/rl.md, "The GRPO family").

    Attributes:
        epsilon: lower clip ``1 - epsilon`` of the ratio (every clipped algorithm; ``clip_range``).
        epsilon_high: upper clip ``1 + epsilon_high`` (the family; cispo: the IS-weight cap).
        importance_sampling_level: ``token`` ratios or one length-normalised ``sequence`` ratio.
        loss_agg_mode: how per-token losses become one number (:func:`fnsft.rl.grpo_family.aggregate_loss`).
        scale_rewards: group advantages divided by the ``group``'s std, the ``batch``'s, or not (``none``).
        dynamic_sampling: drop groups whose rewards are all equal and sample more prompts.
        max_resample: most extra rollouts per iteration to refill dropped groups.
        overlong_buffer: tokens before ``max_new_tokens`` where the soft length penalty ramps (0: off).
        overlong_penalty_factor: the penalty at ``max_new_tokens``.
        mask_truncated_completions: completions cut at ``max_new_tokens`` leave the loss.
        max_new_tokens: the completion length limit (the overlong ramp's end, Dr. GRPO's constant).
    """

    epsilon: float = 0.2
    epsilon_high: float = 0.2
    importance_sampling_level: str = "token"
    loss_agg_mode: str = "token_mean"
    scale_rewards: str = "group"
    dynamic_sampling: bool = False
    max_resample: int = 4
    overlong_buffer: int = 0
    overlong_penalty_factor: float = 1.0
    mask_truncated_completions: bool = False
    max_new_tokens: int = 64


def describe_knobs(k: AlgoKnobs, loss: str) -> str:
    """One line for the ``--dry_run`` plan: what the family's loss will do."""
    if loss == "cispo":
        parts = [f"IS weights capped at {1 + k.epsilon_high:g}"]
    else:
        parts = [f"{k.importance_sampling_level} ratio clipped to [{1 - k.epsilon:g}, {1 + k.epsilon_high:g}]"]
    parts += [k.loss_agg_mode, f"scale_rewards {k.scale_rewards}"]
    if k.dynamic_sampling:
        parts.append(f"dynamic sampling (max_resample {k.max_resample})")
    if k.overlong_buffer:
        parts.append(f"overlong penalty over the last {k.overlong_buffer} tokens (x{k.overlong_penalty_factor:g})")
    if k.mask_truncated_completions:
        parts.append("truncated completions masked")
    return ", ".join(parts)


def _default(c: Any, name: str) -> Any:
    """The config class's default for ``name`` (what an untouched key holds)."""
    for f in dataclasses.fields(c):
        if f.name == name:
            return f.default
    return None


def resolve_knobs(c: Any, key: str = "rl") -> AlgoKnobs:
    """The knobs of config ``c`` (an :class:`~fnsft.stages.rl.RLConfig`) for its algorithm.

    Raises one :class:`ConfigError` line naming ``key``'s field when two keys contradict, a knob
    does not apply to the algorithm, or a value is outside what is accepted.
    """
    spec = ALGORITHMS.get(c.algorithm.lower())
    family = spec is not None and bool(spec.loss)
    defaults = dict(spec.defaults) if spec is not None else {}
    name = spec.name if spec is not None else c.algorithm
    family_names = ", ".join(n for n, s in ALGORITHMS.items() if s.loss)
    for knob in ("epsilon_high", "importance_sampling_level", "loss_agg_mode", "scale_rewards"):
        if getattr(c, knob) is not None and not family:
            raise ConfigError(f"{key}.{knob}: applies to the GRPO family ({family_names}), not to "
                              f"algorithm {name}; remove it or pick one of those")

    clip_default = _default(c, "clip_range")
    clip_given = c.clip_range != clip_default
    if c.epsilon is not None and clip_given and c.epsilon != c.clip_range:
        raise ConfigError(f"{key}.epsilon: {c.epsilon:g} contradicts {key}.clip_range: {c.clip_range:g} "
                          "(the same knob under TRL's name and ours); set only one")
    if c.epsilon is not None:
        epsilon = c.epsilon
    elif clip_given:
        epsilon = c.clip_range
    else:
        epsilon = defaults.get("epsilon", c.clip_range)
    if c.epsilon_high is not None:
        epsilon_high = c.epsilon_high
    elif spec is not None and spec.loss == "cispo":
        epsilon_high = defaults["epsilon_high"]  # an IS-weight cap, not a clip around 1 +- epsilon
    else:  # the algorithm's clip-higher, never below a lower clip the user chose
        epsilon_high = max(defaults.get("epsilon_high", epsilon), epsilon)
    if family and spec.loss == "clip" and epsilon_high < epsilon:
        raise ConfigError(f"{key}.epsilon_high: {epsilon_high:g} is below {key}.epsilon {epsilon:g}; the upper "
                          "clip 1 + epsilon_high (DAPO's clip-higher) must be >= the lower one")

    level = c.importance_sampling_level or defaults.get("importance_sampling_level", "token")
    _one_of(level, IMPORTANCE_SAMPLING_LEVELS, f"{key}.importance_sampling_level")
    if family and spec.loss == "cispo" and level != "token":
        raise ConfigError(f"{key}.importance_sampling_level: cispo weights every token by its own clipped "
                          f"ratio; use token (got {level!r})")
    if family and "importance_sampling_level" in defaults and level != defaults["importance_sampling_level"]:
        raise ConfigError(f"{key}.importance_sampling_level: {name} is defined by its "
                          f"{defaults['importance_sampling_level']}-level ratio (got {level!r}); use dapo or "
                          "dr_grpo for token-level ratios")

    agg_from_old = "seq_mean_token_mean" if c.loss_agg == "sequence" else None
    mode = c.loss_agg_mode
    if mode is not None:
        _one_of(mode, LOSS_AGG_MODES, f"{key}.loss_agg_mode")
        if agg_from_old and mode != agg_from_old:
            raise ConfigError(f"{key}.loss_agg_mode: {mode} contradicts {key}.loss_agg: sequence "
                              f"(= {agg_from_old}); set only loss_agg_mode")
    else:
        mode = agg_from_old or defaults.get("loss_agg_mode", "token_mean")

    scale = c.scale_rewards if c.scale_rewards is not None else defaults.get("scale_rewards", "group")
    _one_of(scale, SCALE_REWARDS, f"{key}.scale_rewards")
    if family and c.scale_rewards is not None and spec.advantage != "group":
        raise ConfigError(f"{key}.scale_rewards: {name} whitens its returns over the whole batch; "
                          "scale_rewards applies to group advantages (dapo, dr_grpo, gspo, cispo)")

    dynamic = c.dynamic_sampling if c.dynamic_sampling is not None else bool(defaults.get("dynamic_sampling"))
    if dynamic and spec is not None and not spec.needs_groups:
        raise ConfigError(f"{key}.dynamic_sampling: drops groups of equal rewards, but {name} samples no groups; "
                          "use it with a group algorithm (dapo, grpo, ...)")
    if c.overlong_buffer >= c.max_new_tokens and c.overlong_buffer:
        raise ConfigError(f"{key}.overlong_buffer: {c.overlong_buffer} must be below max_new_tokens "
                          f"({c.max_new_tokens}): the penalty ramps over the last overlong_buffer tokens")
    return AlgoKnobs(epsilon=epsilon, epsilon_high=epsilon_high, importance_sampling_level=level,
                     loss_agg_mode=mode, scale_rewards=scale, dynamic_sampling=dynamic,
                     max_resample=c.max_resample, overlong_buffer=c.overlong_buffer,
                     overlong_penalty_factor=c.overlong_penalty_factor,
                     mask_truncated_completions=c.mask_truncated_completions, max_new_tokens=c.max_new_tokens)


def _one_of(value: Optional[str], accepted: tuple, path: str) -> None:
    if value not in accepted:
        raise ConfigError(f"{path}: unknown value {value!r}; expected one of {', '.join(accepted)}")
