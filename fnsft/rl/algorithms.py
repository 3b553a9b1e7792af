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
    """

    name: str
    uses_critic: bool
    needs_groups: bool
    multiple_epochs: bool
    policy_update: str
    description: str


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
}


def get_algorithm(name: str) -> AlgoSpec:
    """The spec for ``rl.algorithm: name``; a :class:`ConfigError` naming the choices otherwise."""
    try:
        return ALGORITHMS[name.lower()]
    except KeyError:
        raise ConfigError(
            f"unknown rl.algorithm {name!r}; expected one of {', '.join(ALGORITHMS)}"
        ) from None
