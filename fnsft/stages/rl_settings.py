"""The nested settings of ``stage_configs.rl`` (and ``rlaif``): one dataclass per YAML block.

Each block's fields carry their help text; :class:`fnsft.stages.rl.RLConfig` holds one field per block.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from fnsft.actors.group import RoleResources


@dataclass
class GenerationSettings(RoleResources):
    """``rl.generation``: the generation actors."""

    engine: Literal["auto", "hf", "vllm"] = field(
        default="auto", metadata={"help": "hf: transformers generate; vllm: vLLM (installed here, or its CPU build's "
                                          "venv from scripts/setup_test_tools.sh); auto: vLLM on GPU where installed, "
                                          "hf on CPU (docs/rl.md)."})
    batch_size: int = field(default=0, metadata={"help": "HF generate micro-batch per actor (0: the whole share at once)."})
    vllm_kwargs: dict[str, Any] = field(default_factory=dict, metadata={"help": "Extra vllm.LLM(...) arguments."})
    score_chunks: int = field(
        default=0, metadata={"help": "Generate calls per replica and iteration; each chunk is scored as soon as it "
                                     "is generated, so scoring (an RLAIF judge) overlaps the rest of the generation "
                                     "(1: generate everything, then score; 0: 1 in rl, 2 in rlaif)."})


@dataclass
class ReferenceSettings(RoleResources):
    """``rl.reference``: where the frozen reference log-probs come from."""

    mode: Literal["auto", "actor", "policy", "none"] = field(
        default="auto",
        metadata={"help": "actor: a frozen copy in its own actor; policy: the LoRA policy with adapters disabled "
                          "(use_peft only); none: no KL; auto: policy with LoRA, else actor (none when kl_coef is 0)."})
    num_cpus: float = field(default=0.5, metadata={"help": "CPUs per reference actor."})
    model_name_or_path: Optional[str] = field(
        default=None, metadata={"help": "A different frozen model in the reference actor (same tokenizer as the "
                                        "policy): on_policy_distill's teacher; null: the stage's incoming model."})


@dataclass
class AsyncRolloutSettings:
    """``rl.async_rollout``: sample the next batches while the learner trains (docs/rl.md)."""

    enabled: bool = field(
        default=False, metadata={"help": "Generation (and reward) actors sample the next batch with policy version k "
                                         "while the learner trains on batch k; weight pushes land between generate "
                                         "calls. false: the synchronous loop."})
    max_staleness: int = field(
        default=1, metadata={"help": "Most policy versions a sample may lag the learner (>= 0): that many rollouts "
                                     "run ahead of the update. 0: one rollout at a time, the synchronous schedule."})


@dataclass
class BehaviorCorrectionSettings:
    """``rl.behavior_correction``: importance weights between the learner's old policy and the
    policy that sampled (:mod:`fnsft.rl.off_policy`)."""

    type: Literal["none", "tis", "mis"] = field(
        default="none", metadata={"help": "none: no weights (stats only); tis: truncated IS, min(ratio, cap); "
                                          "mis: masked IS, samples with ratio > cap leave the policy gradient."})
    cap: float = field(default=2.0, metadata={"help": "Upper bound of the importance ratio (> 1)."})
    level: Literal["token", "sequence"] = field(
        default="token", metadata={"help": "token: one ratio per token; sequence: the product over the completion "
                                           "(TRL's sequence_truncate / sequence_mask)."})


def validate_async(c, key: str, spec) -> None:
    """``rl.async_rollout`` and ``rl.behavior_correction`` of config ``c`` (an ``RLConfig``; the
    algorithm's ``spec``): one ConfigError line naming the key, before Ray starts."""
    import math

    from fnsft.errors import ConfigError

    a, b = c.async_rollout, c.behavior_correction
    if isinstance(a.max_staleness, bool) or a.max_staleness < 0:
        raise ConfigError(f"{key}.async_rollout.max_staleness: must be >= 0 policy versions "
                          f"(0: the synchronous schedule; got {a.max_staleness})")
    if not math.isfinite(b.cap) or b.cap <= 1:
        raise ConfigError(f"{key}.behavior_correction.cap: must be a number > 1 (an importance ratio bound; "
                          f"got {b.cap})")
    if b.type != "none" and not a.enabled:
        raise ConfigError(f"{key}.behavior_correction.type: {b.type} weights samples drawn by an older policy; "
                          "it needs async_rollout.enabled: true (or use type: none)")
    if a.enabled and spec.policy_update == "dpo":
        raise ConfigError(f"{key}.async_rollout.enabled: online_dpo ranks pairs of the current policy; "
                          "asynchronous rollouts support the policy-gradient algorithms")
    if a.enabled and c.environment.enabled:
        raise ConfigError(f"{key}.async_rollout.enabled: multi-turn episodes (rl.environment) run synchronously; "
                          "set async_rollout.enabled: false or remove rl.environment")
    if a.enabled:
        from fnsft.rl.knobs import resolve_knobs

        if resolve_knobs(c, key).dynamic_sampling:
            raise ConfigError(f"{key}.async_rollout.enabled: dynamic sampling refills groups with rollouts of the "
                              "current policy, synchronously; set dynamic_sampling: false or async_rollout.enabled: false")
    if a.enabled and c.generation.engine == "vllm":
        raise ConfigError(f"{key}.async_rollout.enabled: asynchronous rollouts are tested with the HF generation "
                          "engine only; use generation.engine: hf (or auto)")


def generation_engine(c, key: str, model: str = "", use_gpu: Optional[bool] = None):
    """``rl.generation.engine`` of config ``c`` resolved (:func:`fnsft.actors.vllm_runtime.choose_engine`)
    for ``model`` (the stage's input model folder; before Ray the pipeline's ``model_name_or_path``,
    a built-in's cache folder standing in) and GPU use (None: this machine's). ``vllm`` that cannot
    run is one ConfigError line."""
    import os

    from fnsft.actors.vllm_runtime import choose_engine

    if model.startswith("builtin:"):
        from fnsft.models.builtin import cache_dir

        model = os.path.join(cache_dir(), "models", model.split(":", 1)[1])
    if use_gpu is None and c.generation.engine != "hf":  # hf needs no answer (and no torch import)
        import torch

        use_gpu = torch.cuda.is_available()
    return choose_engine(c.generation.engine, model if os.path.isdir(model) else "", use_gpu,
                         f"{key}.generation.engine")


@dataclass(kw_only=True)
class GRPOFamilyKeys:
    """The GRPO family's knobs, flat ``rl.*`` keys named as TRL and veRL name them
    (:mod:`fnsft.rl.knobs` resolves them; null takes the algorithm's default; docs/rl.md)."""

    epsilon: Optional[float] = field(default=None, metadata={"help": "TRL's name for clip_range: lower clip 1 - epsilon."})
    epsilon_high: Optional[float] = field(default=None, metadata={
        "help": "Upper clip 1 + epsilon_high (DAPO's clip-higher, 0.28 for dapo); cispo: the IS-weight cap - 1 (4)."})
    importance_sampling_level: Optional[Literal["token", "sequence"]] = field(
        default=None, metadata={"help": "Ratio per token, or GSPO's one length-normalised ratio per sequence."})
    loss_agg_mode: Optional[Literal["token_mean", "seq_mean_token_sum", "seq_mean_token_mean"]] = field(
        default=None, metadata={"help": "veRL's loss aggregation (default: loss_agg's, or the algorithm's)."})
    scale_rewards: Optional[Literal["group", "batch", "none"]] = field(
        default=None, metadata={"help": "Group advantages divided by the group's std, the batch's, or none (dr_grpo)."})
    dynamic_sampling: Optional[bool] = field(
        default=None, metadata={"help": "Drop groups of equal rewards, refill with new prompts (default: dapo only)."})
    max_resample: int = field(default=4, metadata={"help": "Dynamic sampling: most extra rollouts per iteration."})
    overlong_buffer: int = field(default=0, metadata={
        "help": "DAPO's soft overlong penalty over the last N tokens before max_new_tokens (0: off)."})
    overlong_penalty_factor: float = field(default=1.0, metadata={"help": "The overlong penalty at max_new_tokens."})
    mask_truncated_completions: bool = field(
        default=False, metadata={"help": "Completions cut at max_new_tokens leave the loss (TRL's key)."})
