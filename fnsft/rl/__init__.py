"""Pure tensor math for the RL stage: advantages, losses, KL control, TRPO.

No models, no Ray: plain functions over ``(batch, seq)`` tensors with a float ``mask`` (1 on
response tokens), so the same RL loop serves every algorithm:

- **PPO**  — :func:`gae` + :func:`ppo_policy_loss` + :func:`value_loss`, KL in the reward.
- **A2C**  — :func:`gae` (or :func:`discounted_returns`) + :func:`a2c_policy_loss` + :func:`value_loss`.
- **TRPO** — :func:`gae` + :func:`trpo_step` on :func:`trpo_surrogate_loss` / :func:`kl_from_logits`.
- **GRPO** — :func:`group_advantages` + :func:`grpo_loss` (KL to the reference in the loss).
- **RLOO** — :func:`rloo_advantages` + :func:`a2c_policy_loss`.

:data:`ALGORITHMS` records which of these pieces (critic, groups, epochs) each one uses.
"""

from fnsft.rl.advantages import discounted_returns, gae, group_advantages, rloo_advantages
from fnsft.rl.algorithms import ALGORITHMS, AlgoSpec, get_algorithm
from fnsft.rl.kl import (
    KL_KINDS,
    AdaptiveKLController,
    FixedKLController,
    add_kl_to_rewards,
    kl_from_logits,
    kl_penalty,
)
from fnsft.rl.losses import (
    a2c_policy_loss,
    entropy_from_logits,
    grpo_loss,
    ppo_policy_loss,
    trpo_surrogate_loss,
    value_loss,
)
from fnsft.rl.masked import masked_mean, masked_sum, masked_var, masked_whiten
from fnsft.rl.trpo import (
    conjugate_gradient,
    fisher_vector_product,
    flat_grad,
    flat_params,
    set_flat_params_,
    trpo_step,
)

__all__ = [
    "ALGORITHMS",
    "KL_KINDS",
    "AdaptiveKLController",
    "AlgoSpec",
    "FixedKLController",
    "a2c_policy_loss",
    "add_kl_to_rewards",
    "conjugate_gradient",
    "discounted_returns",
    "entropy_from_logits",
    "fisher_vector_product",
    "flat_grad",
    "flat_params",
    "gae",
    "get_algorithm",
    "group_advantages",
    "grpo_loss",
    "kl_from_logits",
    "kl_penalty",
    "masked_mean",
    "masked_sum",
    "masked_var",
    "masked_whiten",
    "ppo_policy_loss",
    "rloo_advantages",
    "set_flat_params_",
    "trpo_step",
    "trpo_surrogate_loss",
    "value_loss",
]
