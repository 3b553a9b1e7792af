"""The learner half of the RL trainer: what one update does to the policy (and critic).

:class:`RLLearner` is a mixin of :class:`fnsft.workers.rl.worker.RLTrainer`; it reads the
trainer's state (``c`` the stage config, ``spec`` the algorithm, ``settings``, ``rank``/``world``/
``device``, ``module`` = policy + value head, ``policy``, ``value_head``, ``strategy``,
``kl_ctl``, ``ref_mode``, and for TRPO ``policy_params``/``critic_opt``). One :meth:`update`:

1. the old pass (:meth:`_old_pass`): log-probs, values and adapter-off reference log-probs of
   the rollout before any change, each rank on its shard, gathered — skipped when one
   on-policy step can read them from its own forward (:meth:`_needs_old_pass`);
2. advantages (:func:`fnsft.rl.loop.compute_advantages`, on every rank, same numbers);
3. the update: minibatch gradient steps through the :class:`~fnsft.workers.rl.strategy.Strategy`
   (ppo, a2c, grpo, rloo), or one TRPO natural-gradient step on rank 0 with parameters
   broadcast (DeepSpeed's partitioned optimizer offers no Fisher-vector products);
4. the KL controller's update from the measured KL.
"""

from __future__ import annotations

import contextlib
import math
import time

from fnsft.workers.finite_guard import check_finite_stats
from fnsft.workers.rl.strategy import active_dist, gather_rows, mean_stats


def policy_value_module(policy, value_head, precision=None, top_k: int = 0, top_p: float = 1.0):
    """The policy and its critic as one ``torch.nn.Module`` (what the Strategy wraps).

    Its forward runs under ``precision``'s autocast (float32 master weights, half compute) and
    scores tokens under the sampling distribution (``top_k`` / ``top_p``, as generated)."""
    import torch

    from fnsft.models.forward import completion_forward

    class PolicyValueModel(torch.nn.Module):
        """What DeepSpeed/DDP wrap: the causal LM plus an optional value head on its last hidden state."""

        def __init__(self):
            super().__init__()
            self.policy = policy
            self.value_head = value_head

        def forward(self, batch: dict, temperature: float = 1.0, need_logits: bool = False,
                    detach_value_input: bool = False, with_value: bool = True, need_entropy: bool = False,
                    entropy_grad: bool = True):
            device = batch["completion_ids"].device.type
            with precision.autocast(device) if precision is not None else contextlib.nullcontext():
                return completion_forward(self.policy, batch, temperature,
                                          self.value_head if with_value else None,
                                          need_logits=need_logits, detach_value_input=detach_value_input,
                                          need_entropy=need_entropy, entropy_grad=entropy_grad,
                                          top_k=top_k, top_p=top_p,
                                          # with a critic every pass takes the full path: ratios start at 1
                                          share_prompts=self.value_head is None)

    return PolicyValueModel()


class RLLearner:
    """Old log-probs pass, advantages and the policy/critic update of one RL iteration (a mixin)."""

    def _to_device(self, arrays: dict) -> dict:
        from fnsft.models.tokens import to_torch

        return to_torch(arrays, self.device)

    def passes(self) -> tuple[int, int]:
        """``(epochs, minibatches)`` per batch: ``ppo_epochs`` x ``num_mini_batches``, or one pass."""
        if self.spec.multiple_epochs:
            return self.c.ppo_epochs, self.c.num_mini_batches
        return 1, 1

    def _needs_old_pass(self) -> bool:
        """Whether log-probs before the update must come from a separate forward pass.

        One on-policy gradient step on the whole batch (grpo/rloo/a2c-style: no critic, one
        epoch, one minibatch) starts from exactly the sampling policy, so the training forward's
        own log-probs (detached) are the old ones, as in TRL's GRPO; the extra pass is skipped
        unless the KL to the reference goes into the reward, which advantages need first.
        """
        if self.spec.uses_critic or self.spec.policy_update in ("natural", "dpo") or self.spec.advantage == "teacher":
            return True  # dpo / distillation: the advantages need log π (and log π_ref / teacher) first
        epochs, n_mb = self.passes()
        kl_in_reward = self.settings.kl_in_reward and self.ref_mode is not None and self.kl_ctl.value > 0
        return epochs * n_mb > 1 or kl_in_reward

    def _old_pass(self, full: dict, need_old: bool = True) -> dict:
        """Log-probs (and values, reference log-probs) before the update, on this rank's shard, gathered."""
        import torch

        from fnsft.models.forward import completion_forward

        keys = ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "completion_attention")
        shard = {k: full[k][self.rank::self.world] for k in keys if k in full}
        out = {}
        with torch.no_grad():
            has_rows = len(shard["completion_ids"]) > 0
            if has_rows and need_old:
                res = self.module(shard, self.c.temperature, with_value=self.spec.uses_critic)
                out["old_logprobs"] = res["logprobs"]
                if self.spec.uses_critic:
                    out["old_values"] = res["values"]
            if has_rows and self.ref_mode == "adapters":
                with self.policy.disable_adapter():
                    out["ref_logprobs"] = completion_forward(self.policy, shard, self.c.temperature)["logprobs"]
        return {k: v.to(self.device) for k, v in gather_rows(out, self.world, len(full["completion_ids"])).items()}

    def update(self, arrays: dict, it: int) -> dict[str, float]:
        from fnsft.rl.loop import compute_advantages, sequence_kl

        full = self._to_device(arrays)
        mask = full["completion_mask"].float()
        t_ref = time.perf_counter()
        # Asynchronous rollouts weigh samples by π_old/μ: the old log-probs are needed before the step.
        full.update(self._old_pass(full, need_old=self._needs_old_pass() or "behavior_logprobs" in full))
        old_pass_s = time.perf_counter() - t_ref
        ref = full.get("ref_logprobs")
        kl_coef = self.kl_ctl.value
        adv = compute_advantages(self.spec, self.settings, full["scores"].float(), mask, full.get("old_logprobs"),
                                 ref, full.get("old_values"), kl_coef)
        full.update(adv)
        stats: dict[str, float] = {"old_pass_s": old_pass_s, "kl_coef": kl_coef}
        if "behavior_logprobs" in full:  # rl.behavior_correction (fnsft.rl.off_policy)
            from fnsft.rl.off_policy import behavior_correction

            b = self.c.behavior_correction
            full["advantages"], corr = behavior_correction(full["advantages"], full["old_logprobs"],
                                                           full["behavior_logprobs"], mask, b.type, b.cap, b.level)
            stats.update(corr)
        stats.update({k: float(v) for k, v in adv.items() if k.startswith(("dpo_", "overlong_"))})
        if ref is not None and "old_logprobs" in full:
            stats["kl"] = float(sequence_kl(full["old_logprobs"], ref, mask, "k1").mean())
        stats["advantage_std"] = float(full["advantages"].std()) if full["advantages"].numel() > 1 else 0.0
        if self.spec.policy_update == "natural":
            stats.update(self._trpo_update(full))
        else:
            stats.update(self._gradient_update(full, it))  # sets "kl" when the old pass was skipped
        if "kl" in stats:
            self.kl_ctl.update(stats["kl"], n_steps=len(mask))
        return stats

    def _gradient_update(self, full: dict, it: int) -> dict[str, float]:
        import torch

        from fnsft.rl.loop import policy_objective, sequence_kl

        c, spec = self.c, self.spec
        kl_rows: list = []
        n = len(full["completion_ids"])
        epochs, n_mb = self.passes()
        gen = torch.Generator().manual_seed(c.seed + it)  # same permutation on every rank
        stats, norms = [], []
        keys = [k for k in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "completion_attention",
                            "old_logprobs",
                            "advantages", "returns", "old_values", "ref_logprobs") if k in full]
        for _ in range(epochs):
            perm = torch.randperm(n, generator=gen) if n_mb > 1 or epochs > 1 else torch.arange(n)
            for chunk in perm.chunk(n_mb):
                idx = chunk[self.rank::self.world].to(self.device)
                mb = {k: full[k][idx] for k in keys}
                # Entropy row by row (no (B, C, V) logits kept); a graph only when it is a bonus.
                out = self.strategy(mb, c.temperature, need_entropy=True, entropy_grad=bool(c.entropy_coef),
                                    with_value=spec.uses_critic)
                if "old_logprobs" not in mb:  # one on-policy step: these weights sampled the batch
                    mb["old_logprobs"] = out["logprobs"].detach()
                    if "ref_logprobs" in mb:
                        kl_rows.append(sequence_kl(mb["old_logprobs"], mb["ref_logprobs"],
                                                   mb["completion_mask"].float(), "k1"))
                loss, st = policy_objective(spec, self.settings, out["logprobs"], mb, self.kl_ctl.value,
                                            values=out.get("values"), entropy=out["entropy"])
                check_finite_stats(self.job.stage_name, st, it + 1, self.precision, c.learning_rate, self.job)
                norms.append(self.strategy.backward_step(loss))
                stats.append({k: float(v) for k, v in st.items()})
        if kl_rows:
            stats.append({"kl": float(torch.cat(kl_rows).mean())})
        result = mean_stats(stats, self.device)
        finite = [x for x in norms if math.isfinite(x)]
        if finite:
            result["grad_norm"] = sum(finite) / len(finite)
        return result

    def _trpo_update(self, full: dict) -> dict[str, float]:
        """Rank 0: one TRPO step on the whole batch, then critic steps; parameters broadcast."""
        import torch

        from fnsft.models.forward import completion_forward
        from fnsft.rl import kl_from_logits, trpo_step, trpo_surrogate_loss, value_loss
        from fnsft.rl.kl import kl_penalty
        from fnsft.rl.losses import entropy_from_logits
        from fnsft.rl.masked import masked_mean

        c = self.c
        result: dict[str, float] = {}
        if self.rank == 0:
            keys = ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "completion_attention")
            batch = {k: full[k] for k in keys if k in full}
            mask = full["completion_mask"].float()
            ref = full.get("ref_logprobs")
            kl_in_loss = not self.settings.kl_in_reward and ref is not None and self.kl_ctl.value > 0
            with torch.no_grad():
                old = completion_forward(self.policy, batch, c.temperature, need_logits=True)
            old_logits = old["logits"].detach()

            def loss_fn():  # scored as the old pass scored them (autocast, sampling filter)
                out = self.module(batch, c.temperature, with_value=False)
                loss, _ = trpo_surrogate_loss(out["logprobs"], full["old_logprobs"], full["advantages"], mask)
                if kl_in_loss:
                    loss = loss + self.kl_ctl.value * masked_mean(kl_penalty(out["logprobs"], ref, "k3"), mask)
                return loss

            def kl_fn():
                out = completion_forward(self.policy, batch, c.temperature, need_logits=True)
                return kl_from_logits(old_logits, out["logits"], mask)

            step = trpo_step(self.policy_params, loss_fn, kl_fn, max_kl=c.max_kl, damping=c.trpo_damping,
                             cg_iters=c.cg_iters, backtrack_iters=c.backtrack_iters)
            result.update({f"trpo_{k}": float(v) for k, v in step.items()})
            with torch.no_grad():  # measured independently of the line search: KL(old || new) on the batch
                new = completion_forward(self.policy, batch, c.temperature, need_logits=True)
                result["policy_kl_after_update"] = float(kl_from_logits(old_logits, new["logits"], mask))
                result["entropy"] = float(entropy_from_logits(new["logits"], mask))
                hidden = completion_forward(self.policy, batch, c.temperature, need_hidden=True)["hidden"]
            # The critic reads the policy's features but never changes the policy (the trust region).
            for _ in range(max(1, c.ppo_epochs)):
                values = self.value_head(hidden.float()).squeeze(-1).float()  # the head: float32 master
                vloss, _ = value_loss(values, full["old_values"], full["returns"], mask, None)
                self.critic_opt.zero_grad(set_to_none=True)
                vloss.backward()
                self.critic_opt.step()
            result["value_loss"] = float(vloss.detach())
        dist = active_dist()
        if dist is not None:
            with torch.no_grad():
                for p in list(self.policy_params) + list(self.value_head.parameters()):
                    dist.broadcast(p.data, src=0)
        return result
