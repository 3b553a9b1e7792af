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

# Lazy re-exports: ``import fnsft.rl.algorithms`` (config validation) must not import torch.
_EXPORTS = {
    "discounted_returns": "advantages",
    "gae": "advantages",
    "group_advantages": "advantages",
    "rloo_advantages": "advantages",
    "ALGORITHMS": "algorithms",
    "AlgoSpec": "algorithms",
    "get_algorithm": "algorithms",
    "KL_KINDS": "kl",
    "AdaptiveKLController": "kl",
    "FixedKLController": "kl",
    "add_kl_to_rewards": "kl",
    "kl_from_logits": "kl",
    "kl_penalty": "kl",
    "a2c_policy_loss": "losses",
    "entropy_from_logits": "losses",
    "grpo_loss": "losses",
    "ppo_policy_loss": "losses",
    "trpo_surrogate_loss": "losses",
    "value_loss": "losses",
    "masked_mean": "masked",
    "masked_sum": "masked",
    "masked_var": "masked",
    "masked_whiten": "masked",
    "conjugate_gradient": "trpo",
    "fisher_vector_product": "trpo",
    "flat_grad": "trpo",
    "flat_params": "trpo",
    "set_flat_params_": "trpo",
    "trpo_step": "trpo",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"fnsft.rl.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'fnsft.rl' has no attribute {name!r}")


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
