"""Which RL algorithms exist and what the RL loop must do differently for each.

The loop (sample → score → advantages → update) is shared; an :class:`AlgoSpec` says whether to
build a critic, whether to sample several completions per prompt, and whether the same batch
may be reused for several epochs. YAML key: ``rl.algorithm``.
"""

from __future__ import annotations

from dataclasses import dataclass

from fnsft.errors import ConfigError


@dataclass(frozen=True)
class AlgoSpec:
    """How one algorithm plugs into the RL loop.

    Attributes:
        name: the ``rl.algorithm`` value.
        uses_critic: build and train a value model; advantages from :func:`fnsft.rl.gae`.
        needs_groups: sample ``rl.num_generations`` completions per prompt; advantages from the
            group (no critic).
        multiple_epochs: the policy update may reuse a batch for several epochs/minibatches
            (needs an importance ratio with clipping); otherwise one on-policy update per batch.
        policy_update: ``"clipped"`` (:func:`~fnsft.rl.ppo_policy_loss` /
            :func:`~fnsft.rl.grpo_loss`), ``"vanilla"`` (:func:`~fnsft.rl.a2c_policy_loss`),
            ``"natural"`` (:func:`~fnsft.rl.trpo_step`) or ``"dpo"`` (:mod:`fnsft.rl.preference`).
        description: one line for docs and ``--help``.
        loss: the GRPO family's per-token loss (:mod:`fnsft.rl.grpo_family`): ``"clip"``
            (decoupled clip, token or sequence ratio) or ``"cispo"`` (clipped IS weights);
            ``""`` for the algorithms above it (their own losses in :mod:`fnsft.rl.losses`).
        advantage: the family's advantages: ``"group"`` (group mean, scaled per
            ``scale_rewards``), ``"reinforce"`` (batch-whitened returns, REINFORCE++),
            ``"reinforce_baseline"`` (group mean subtracted first) or ``"teacher"`` (per token, the
            teacher's log-prob minus the student's: on-policy distillation); ``""``: the older rules.
        kl_in_loss: where the KL to the reference goes when ``rl.kl_in_reward`` is unset.
        defaults: the algorithm's own defaults for the shared knobs
            (:func:`fnsft.rl.knobs.resolve_knobs`), as ``(key, value)`` pairs.
    """

    name: str
    uses_critic: bool
    needs_groups: bool
    multiple_epochs: bool
    policy_update: str
    description: str
    loss: str = ""
    advantage: str = ""
    kl_in_loss: bool = False
    defaults: tuple = ()


ALGORITHMS: dict[str, AlgoSpec] = {
    "ppo": AlgoSpec(
        name="ppo", uses_critic=True, needs_groups=False, multiple_epochs=True, policy_update="clipped",
        description="PPO: clipped surrogate, GAE advantages from a critic, KL penalty in the reward.",
    ),
    "a2c": AlgoSpec(
        name="a2c", uses_critic=True, needs_groups=False, multiple_epochs=False, policy_update="vanilla",
        description="A2C: one on-policy gradient step per batch, advantages from a critic "
        "(GAE; lam=1 gives Monte Carlo returns).",
    ),
    "trpo": AlgoSpec(
        name="trpo", uses_critic=True, needs_groups=False, multiple_epochs=False, policy_update="natural",
        description="TRPO: natural-gradient step by conjugate gradient, line search within rl.max_kl.",
    ),
    "grpo": AlgoSpec(
        name="grpo", uses_critic=False, needs_groups=True, multiple_epochs=True, policy_update="clipped",
        kl_in_loss=True,
        description="GRPO: no critic, group-normalised sequence advantages, KL to the reference in the loss.",
    ),
    "rloo": AlgoSpec(
        name="rloo", uses_critic=False, needs_groups=True, multiple_epochs=False, policy_update="vanilla",
        description="RLOO: REINFORCE with a leave-one-out group baseline, no critic.",
    ),
    "online_dpo": AlgoSpec(
        name="online_dpo", uses_critic=False, needs_groups=True, multiple_epochs=False, policy_update="dpo",
        description="Online DPO: the best and worst scored completion of each prompt are a preference pair; "
        "one DPO step (beta) per batch against the reference.",
    ),
    # The GRPO family (2025): one clipped loss with knobs, entries differ in their defaults.
    "dapo": AlgoSpec(
        name="dapo", uses_critic=False, needs_groups=True, multiple_epochs=True, policy_update="clipped",
        loss="clip", advantage="group", kl_in_loss=True,
        defaults=(("epsilon_high", 0.28), ("loss_agg_mode", "token_mean"), ("dynamic_sampling", True)),
        description="DAPO (Yu et al. 2025): clip-higher (epsilon, epsilon_high), dynamic sampling of groups "
        "with unequal rewards, token-level loss, overlong reward shaping (overlong_buffer).",
    ),
    "dr_grpo": AlgoSpec(
        name="dr_grpo", uses_critic=False, needs_groups=True, multiple_epochs=True, policy_update="clipped",
        loss="clip", advantage="group", kl_in_loss=True,
        defaults=(("scale_rewards", "none"), ("loss_agg_mode", "seq_mean_token_sum")),
        description="Dr. GRPO (Liu et al. 2025): GRPO without the group std and without length normalisation.",
    ),
    "gspo": AlgoSpec(
        name="gspo", uses_critic=False, needs_groups=True, multiple_epochs=True, policy_update="clipped",
        loss="clip", advantage="group", kl_in_loss=True,
        defaults=(("importance_sampling_level", "sequence"), ("epsilon", 3e-4), ("epsilon_high", 4e-4),
                  ("loss_agg_mode", "seq_mean_token_mean")),
        description="GSPO (Zheng et al. 2025): sequence-level importance ratio (length-normalised) and clipping.",
    ),
    "cispo": AlgoSpec(
        name="cispo", uses_critic=False, needs_groups=True, multiple_epochs=True, policy_update="clipped",
        loss="cispo", advantage="group", kl_in_loss=True,
        defaults=(("epsilon_high", 4.0), ("loss_agg_mode", "token_mean")),
        description="CISPO (MiniMax-M1): clipped, stop-gradient IS weights times log-prob on every token.",
    ),
    "reinforce_pp": AlgoSpec(
        name="reinforce_pp", uses_critic=False, needs_groups=False, multiple_epochs=True, policy_update="clipped",
        loss="clip", advantage="reinforce",
        description="REINFORCE++ (Hu 2025): KL in the reward, returns whitened over the batch, PPO clip.",
    ),
    "reinforce_pp_baseline": AlgoSpec(
        name="reinforce_pp_baseline", uses_critic=False, needs_groups=True, multiple_epochs=True,
        policy_update="clipped", loss="clip", advantage="reinforce_baseline",
        description="REINFORCE++-baseline: the group mean subtracted from each score, then as reinforce_pp.",
    ),
    # On-policy distillation (Agarwal et al. 2024, GKD; Thinking Machines 2025): the student samples,
    # the teacher in the reference actor scores each sampled token; no reward model in the loss.
    "on_policy_distill": AlgoSpec(
        name="on_policy_distill", uses_critic=False, needs_groups=False, multiple_epochs=True,
        policy_update="clipped", loss="clip", advantage="teacher",
        description="On-policy distillation: the student samples, each token's advantage is the teacher's "
        "log-prob minus the student's (the per-token reverse KL, rl.reference.model_name_or_path the teacher).",
    ),
}


def get_algorithm(name: str) -> AlgoSpec:
    """The spec for ``rl.algorithm: name``; a :class:`ConfigError` naming the choices otherwise."""
    try:
        return ALGORITHMS[name.lower()]
    except KeyError:
        raise ConfigError(
            f"unknown rl.algorithm {name!r}; expected one of {', '.join(ALGORITHMS)}"
        ) from None
