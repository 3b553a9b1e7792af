"""The per-iteration math of the RL loop, shared by every algorithm: pure functions over tensors.

The learner (:mod:`fnsft.workers.rl.learner`) computes log-probs/values with its model and
calls these; which pieces run is decided by the algorithm's :class:`~fnsft.rl.AlgoSpec`:

- :func:`compute_advantages` — scores (+ KL to the reference when ``kl_in_reward``) →
  GAE with the critic (ppo, a2c, trpo) or group baselines (grpo, rloo); for on-policy
  distillation the teacher's per-token log-probs minus the student's (:mod:`fnsft.rl.distill`).
- :func:`policy_objective` — the loss of one minibatch for the gradient-based updates
  (clipped for ppo/grpo, vanilla for a2c/rloo) plus value loss, entropy bonus and, when the
  KL is not in the reward, the KL penalty.
- TRPO's natural-gradient step uses :func:`fnsft.rl.trpo_step` with
  :func:`fnsft.rl.trpo_surrogate_loss` directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor

from fnsft.rl.advantages import gae, group_advantages, rloo_advantages
from fnsft.rl.algorithms import AlgoSpec
from fnsft.rl.kl import add_kl_to_rewards, kl_penalty
from fnsft.rl.knobs import AlgoKnobs
from fnsft.rl.losses import a2c_policy_loss, entropy_from_logits, grpo_loss, ppo_policy_loss, value_loss
from fnsft.rl.masked import masked_mean, masked_sum, masked_whiten


@dataclass
class LossSettings:
    """The RL stage's loss knobs (same names as the ``rl`` YAML keys)."""

    clip_range: float = 0.2
    clip_range_value: Optional[float] = 0.2
    vf_coef: float = 0.1
    entropy_coef: float = 0.0
    kl_in_reward: bool = True
    kl_estimator: str = "k1"
    gamma: float = 1.0
    lam: float = 0.95
    num_generations: int = 1
    whiten_advantages: bool = True
    loss_agg: str = "token"
    beta: float = 0.1  # online_dpo
    # The GRPO family's knobs (fnsft.rl.knobs.resolve_knobs); the overlong penalty serves every algorithm.
    knobs: AlgoKnobs = field(default_factory=AlgoKnobs)


def sequence_kl(logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor, kind: str = "k1") -> Tensor:
    """``(B,)`` summed per-token KL estimate of each sequence (the KL that is logged and controlled)."""
    return masked_sum(kl_penalty(logprobs, ref_logprobs, kind), mask, dim=-1)


@torch.no_grad()
def compute_advantages(
    spec: AlgoSpec,
    s: LossSettings,
    scores: Tensor,
    mask: Tensor,
    old_logprobs: Tensor,
    ref_logprobs: Optional[Tensor],
    values: Optional[Tensor],
    kl_coef: float,
) -> dict[str, Tensor]:
    """Advantages (``(B, T)`` with a critic, ``(B,)`` for group baselines) and critic targets.

    With ``s.kl_in_reward`` and a reference, ``kl_coef`` times the KL estimate is subtracted
    from the reward: per token for GAE, summed per sequence for the group baselines.
    """
    out: dict[str, Tensor] = {}
    k = s.knobs
    if k.overlong_buffer > 0:  # DAPO's soft length penalty, on the score before any baseline
        from fnsft.rl.grpo_family import overlong_penalty

        penalty = overlong_penalty(mask.sum(dim=-1), k.max_new_tokens, k.overlong_buffer, k.overlong_penalty_factor)
        scores = scores.float() + penalty
        out["overlong_penalty_mean"] = penalty.mean()
        out["overlong_share"] = (penalty < 0).float().mean()
    if spec.advantage:
        out.update(_family_advantages(spec, s, scores.float(), mask, old_logprobs, ref_logprobs, kl_coef))
        return out
    if spec.policy_update == "dpo":
        from fnsft.rl.preference import dpo_row_weights

        if ref_logprobs is None or old_logprobs is None:
            raise ValueError("online_dpo needs the policy's and the reference's log-probs")
        weights, st = dpo_row_weights(old_logprobs, ref_logprobs, mask, scores.float(), s.num_generations, s.beta)
        out.update(advantages=weights, sequence_rewards=scores.float(),
                   **{k: torch.tensor(v) for k, v in st.items()})
        return out
    use_kl = s.kl_in_reward and ref_logprobs is not None and kl_coef > 0
    if spec.uses_critic:
        if values is None:
            raise ValueError(f"{spec.name} needs the critic's values")
        ref = ref_logprobs if use_kl else old_logprobs  # no KL: log-ratio 0, rewards = scores
        token_rewards = add_kl_to_rewards(scores, old_logprobs, ref, mask, kl_coef if use_kl else 0.0,
                                          kind=s.kl_estimator)
        adv, returns = gae(token_rewards, values, mask, s.gamma, s.lam)
        if s.whiten_advantages:
            adv = masked_whiten(adv, mask)
        out.update(advantages=adv, returns=returns)
        out["sequence_rewards"] = masked_sum(token_rewards, mask, dim=-1)
        return out
    seq_rewards = scores.float()
    if use_kl:
        seq_rewards = seq_rewards - kl_coef * sequence_kl(old_logprobs, ref_logprobs, mask, s.kl_estimator)
    if spec.name == "rloo":
        adv = rloo_advantages(seq_rewards, s.num_generations)
    else:
        adv = group_advantages(seq_rewards, s.num_generations)
    out.update(advantages=adv, sequence_rewards=seq_rewards)
    return out


def _family_advantages(spec: AlgoSpec, s: LossSettings, scores: Tensor, mask: Tensor, old_logprobs: Optional[Tensor],
                       ref_logprobs: Optional[Tensor], kl_coef: float) -> dict[str, Tensor]:
    """The GRPO family's advantages: scaled group baselines or REINFORCE++'s whitened returns."""
    from fnsft.rl.distill import teacher_advantages
    from fnsft.rl.grpo_family import reinforce_pp_advantages, scaled_group_advantages

    if spec.advantage == "teacher":
        if ref_logprobs is None or old_logprobs is None:
            raise ValueError(f"{spec.name} needs the student's and the teacher's log-probs")
        adv = teacher_advantages(old_logprobs, ref_logprobs, mask)
        return {"advantages": adv, "sequence_rewards": masked_sum(adv, mask, dim=-1)}
    use_kl = s.kl_in_reward and ref_logprobs is not None and kl_coef > 0
    if spec.advantage == "group":
        seq_rewards = scores
        if use_kl:
            seq_rewards = seq_rewards - kl_coef * sequence_kl(old_logprobs, ref_logprobs, mask, s.kl_estimator)
        return {"advantages": scaled_group_advantages(seq_rewards, s.num_generations, s.knobs.scale_rewards),
                "sequence_rewards": seq_rewards}
    groups = s.num_generations if spec.advantage == "reinforce_baseline" else None
    adv, token_rewards = reinforce_pp_advantages(scores, mask, old_logprobs, ref_logprobs if use_kl else None,
                                                 kl_coef, s.kl_estimator, s.gamma, groups)
    return {"advantages": adv, "sequence_rewards": masked_sum(token_rewards, mask, dim=-1)}


def policy_objective(
    spec: AlgoSpec,
    s: LossSettings,
    logprobs: Tensor,
    mb: dict[str, Tensor],
    kl_coef: float,
    values: Optional[Tensor] = None,
    logits: Optional[Tensor] = None,
    entropy: Optional[Tensor] = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Loss of one minibatch for ppo, a2c, grpo and rloo; ``(loss, stats)``.

    ``mb`` holds the minibatch rows of ``completion_mask``, ``old_logprobs``, ``advantages``
    and, as needed, ``returns``/``old_values`` (critic) and ``ref_logprobs`` (KL in the loss).
    The entropy bonus (``s.entropy_coef > 0``) and stat need either per-token ``entropy``
    ``(B, T)`` (:func:`fnsft.models.forward.completion_forward` with ``need_entropy``: no
    ``(B, T, V)`` tensor is kept) or the full ``logits``.
    """
    mask = mb["completion_mask"].to(logprobs.dtype)
    ref = mb.get("ref_logprobs")
    # (on-policy distillation: the KL to the teacher is the objective, never a penalty on top)
    kl_in_loss = not s.kl_in_reward and ref is not None and kl_coef > 0 and spec.advantage != "teacher"
    stats: dict[str, Tensor] = {}
    if spec.policy_update == "dpo":  # the reference enters through the pair weights, not a KL term
        from fnsft.rl.preference import dpo_policy_loss

        loss, _ = dpo_policy_loss(logprobs, mb["advantages"], mask)
        kl_in_loss = False
    elif spec.loss:  # the GRPO family: one clipped loss with knobs, or CISPO's clipped IS weights
        from fnsft.rl.grpo_family import cispo_loss, clipped_loss

        k = s.knobs
        kl_args = {"ref_logprobs": ref if kl_in_loss else None, "kl_coef": kl_coef if kl_in_loss else 0.0}
        if spec.loss == "cispo":
            loss, st = cispo_loss(logprobs, mb["old_logprobs"], mb["advantages"], mask, k.epsilon_high,
                                  k.loss_agg_mode, k.max_new_tokens, **kl_args)
        else:
            loss, st = clipped_loss(logprobs, mb["old_logprobs"], mb["advantages"], mask, k.epsilon, k.epsilon_high,
                                    k.importance_sampling_level, k.loss_agg_mode, k.max_new_tokens, **kl_args)
        stats.update(st)
        kl_in_loss = False  # already inside the loss
    elif spec.name == "grpo":
        loss, st = grpo_loss(logprobs, mb["old_logprobs"], mb["advantages"], mask, s.clip_range,
                             ref_logprobs=ref if kl_in_loss else None, kl_coef=kl_coef if kl_in_loss else 0.0,
                             loss_agg=s.loss_agg)
        stats.update(st)
        kl_in_loss = False  # already inside grpo_loss
    elif spec.policy_update == "clipped":
        loss, st = ppo_policy_loss(logprobs, mb["old_logprobs"], mb["advantages"], mask, s.clip_range)
        stats.update(st)
    else:
        loss, st = a2c_policy_loss(logprobs, mb["advantages"], mask)
        stats.update(st)
    stats["policy_loss"] = loss.detach()
    if kl_in_loss:
        kl = masked_mean(kl_penalty(logprobs, ref, "k3"), mask)
        loss = loss + kl_coef * kl
        stats["kl_loss"] = kl.detach()
    if spec.uses_critic:
        if values is None:
            raise ValueError(f"{spec.name} needs the critic's values")
        clip = s.clip_range_value if spec.multiple_epochs else None  # value clipping is PPO's
        vloss, vst = value_loss(values, mb["old_values"], mb["returns"], mask, clip)
        loss = loss + s.vf_coef * vloss
        stats.update(vst)
        stats["value_loss"] = vloss.detach()
    if entropy is not None or logits is not None:
        h = masked_mean(entropy, mask) if entropy is not None else entropy_from_logits(logits, mask)
        if s.entropy_coef:
            loss = loss - s.entropy_coef * h
        stats["entropy"] = h.detach()
    return loss, stats
