"""The Ray Train worker of the RL stage: one Train job runs every iteration of the loop.

Reads top to bottom like a recipe: :func:`rl_train_worker` → ``RLTrainer.setup`` (policy,
critic, DeepSpeed/DDP) → ``train`` (each iteration: rank 0 collects a rollout from the role
actors and broadcasts it; every rank computes log-probs/values on its shard; advantages;
update; rank 0 pushes the new weights to the generation actors) → ``hand_back``.

Updates:

- ppo, a2c, grpo, rloo: minibatch gradient steps through a :class:`Strategy` — a DeepSpeed
  engine (ZeRO 0-2) or plain torch (DDP when several workers and ``deepspeed.enabled: false``).
- trpo: a natural-gradient step needs Fisher-vector products over all trainable parameters,
  which DeepSpeed's partitioned optimizer does not offer, so TRPO runs in plain torch on rank 0
  over the whole batch and broadcasts the new parameters to the other ranks.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from typing import Any, Optional

from fnsft.utils.console import say

log = logging.getLogger("fnsft.worker")


def _quiet_train_reports() -> None:
    """Ray Train V2 logs every report() at INFO under a file-named logger; keep our own lines only."""
    try:
        from ray.train.v2._internal.execution import context

        logging.getLogger(context.__file__).setLevel(logging.WARNING)
    except Exception:  # another Ray version: nothing to quiet
        pass


# The policy and its critic as one module ---------------------------------------------------
def _policy_value_module(policy, value_head):
    import torch

    from fnsft.actors.modeling import completion_forward

    class PolicyValueModel(torch.nn.Module):
        """What DeepSpeed/DDP wrap: the causal LM plus an optional value head on its last hidden state."""

        def __init__(self):
            super().__init__()
            self.policy = policy
            self.value_head = value_head

        def forward(self, batch: dict, temperature: float = 1.0, need_logits: bool = False,
                    detach_value_input: bool = False, with_value: bool = True):
            return completion_forward(self.policy, batch, temperature,
                                      self.value_head if with_value else None,
                                      need_logits=need_logits, detach_value_input=detach_value_input)

    return PolicyValueModel()


class Strategy:
    """Backward/step for one module: a DeepSpeed engine, DDP, or plain torch (one worker)."""

    def __init__(self, module, params, job, world: int, micro_batch: int, total_steps: int, device):
        import torch
        from transformers import get_scheduler

        c = job.stage_config
        self.module = module
        self.params = params
        self.kind = "torch"
        self.clip = c.max_grad_norm
        optimizer = torch.optim.AdamW(params, lr=c.learning_rate, weight_decay=c.weight_decay)
        warmup = int(c.warmup_steps * total_steps) if 0 < c.warmup_steps < 1 else int(c.warmup_steps)
        scheduler = get_scheduler(c.lr_scheduler_type, optimizer, num_warmup_steps=warmup,
                                  num_training_steps=max(total_steps, 1))
        if job.deepspeed is not None:
            import deepspeed

            cfg = _concrete_deepspeed(job.deepspeed, micro_batch, world, c.max_grad_norm)
            # A torch optimizer (not DeepSpeed's JIT-compiled Adam): allowed by zero_allow_untested_optimizer.
            self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
                model=module, optimizer=optimizer, lr_scheduler=scheduler, config=cfg)
            self.kind = f"deepspeed-zero{cfg['zero_optimization']['stage']}"
            self.forward_module = self.engine
        else:
            self.engine = None
            self.optimizer, self.scheduler = optimizer, scheduler
            self.forward_module = module
            if world > 1:
                from torch.nn.parallel import DistributedDataParallel

                self.forward_module = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
                self.kind = "ddp"

    def __call__(self, *args, **kwargs):
        return self.forward_module(*args, **kwargs)

    def backward_step(self, loss) -> float:
        """One optimizer step on ``loss``; returns the gradient norm (before clipping) when known."""
        import torch

        if self.engine is not None:
            self.engine.backward(loss)
            self.engine.step()
            norm = self.engine.get_global_grad_norm()
            return float(norm) if norm is not None else float("nan")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.clip) if self.clip else torch.tensor(float("nan"))
        self.optimizer.step()
        self.scheduler.step()
        return float(norm)


def _concrete_deepspeed(base: dict, micro_batch: int, world: int, clip: float) -> dict:
    """The generated DeepSpeed dict with its HF "auto" values made concrete (no HF Trainer here)."""
    cfg = json.loads(json.dumps(base))
    cfg["train_micro_batch_size_per_gpu"] = max(1, micro_batch)
    cfg["gradient_accumulation_steps"] = 1
    cfg["train_batch_size"] = max(1, micro_batch) * world
    cfg["gradient_clipping"] = clip
    cfg["bf16"] = {"enabled": False}
    cfg["fp16"] = {"enabled": False}
    cfg.pop("scheduler", None)
    cfg.pop("optimizer", None)
    return cfg


# Collective helpers (no-ops on one worker) ---------------------------------------------------
def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1 else None


def _broadcast(obj, rank: int):
    dist = _dist()
    if dist is None:
        return obj
    box = [obj if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _gather_rows(part: dict, world: int, n: int) -> dict:
    """Reassemble per-rank shards (rank r holds rows r, r+world, ...) into the full batch."""
    import torch

    dist = _dist()
    if dist is None:
        return part
    parts = [None] * world
    dist.all_gather_object(parts, {k: v.cpu() for k, v in part.items()})
    out = {}
    for k in parts[0]:
        full = torch.zeros((n,) + tuple(parts[0][k].shape[1:]), dtype=parts[0][k].dtype)
        for r, p in enumerate(parts):
            full[r::world] = p[k]
        out[k] = full
    return out


def _mean_stats(stats: list[dict], device) -> dict[str, float]:
    """Mean of each stat over minibatches, then over ranks."""
    import torch

    keys = sorted({k for s in stats for k in s})
    if not keys:
        return {}
    local = torch.tensor([sum(float(s[k]) for s in stats if k in s) / max(1, sum(k in s for s in stats))
                          for k in keys], dtype=torch.float64)
    dist = _dist()
    if dist is not None:
        dist.all_reduce(local)
        local /= dist.get_world_size()
    return dict(zip(keys, local.tolist()))


# The trainer ----------------------------------------------------------------------------
class RLTrainer:
    def __init__(self, job, rank: int, world: int, device):
        import torch

        from fnsft.models.loading import load_tokenizer, resolve_torch_dtype
        from fnsft.rl import get_algorithm
        from fnsft.rl.loop import LossSettings

        self.job, self.c = job, job.stage_config
        self.roles = job.extra["roles"]
        self.rank, self.world, self.device = rank, world, device
        self.spec = get_algorithm(self.c.algorithm)
        self.dtype = resolve_torch_dtype(job.torch_dtype, job.use_gpu)
        self.tokenizer = load_tokenizer(job.model.source, job.model.trust_remote_code, self.c.chat_template)
        c = self.c
        self.settings = LossSettings(
            clip_range=c.clip_range, clip_range_value=c.clip_range_value, vf_coef=c.vf_coef,
            entropy_coef=c.entropy_coef, kl_in_reward=c.kl_in_reward_resolved, kl_estimator=c.kl_estimator,
            gamma=c.gamma, lam=c.lam, num_generations=c.num_generations,
            whiten_advantages=c.whiten_advantages, loss_agg=c.loss_agg)
        self.num_iterations = c.max_steps if c.max_steps > 0 else c.num_iterations
        self.history: list[dict] = []
        self.evals: list[dict] = []  # held-out evaluations (iteration 0 = before training)
        self.start_iteration = 0  # > 0 after a restart from a checkpoint
        self.timings: dict[str, float] = {}
        self.kl_ctl = self._kl_controller()
        self.rng = random.Random(c.seed)
        self.order: list[int] = []
        torch.manual_seed(c.seed)

    # Setup ------------------------------------------------------------------------------
    def setup(self) -> None:
        import torch

        from fnsft.actors.modeling import ValueHead

        c = self.c
        policy = self.job.model.load(dtype=self.dtype)
        if self.spec.policy_update == "natural":
            # Fisher-vector products differentiate twice; SDPA's fused CPU/flash kernels cannot.
            policy.set_attn_implementation("eager")
        if c.use_peft:
            from peft import get_peft_model

            from fnsft.models.loading import lora_config

            policy = get_peft_model(policy, lora_config(c))
        if c.gradient_checkpointing:
            policy.gradient_checkpointing_enable()
        value_head = ValueHead.build(policy.config.hidden_size) if self.spec.uses_critic else None
        self.module = _policy_value_module(policy, value_head).to(self.device)
        # No dropout in RL: the ratio between two forward passes must be 1 for unchanged weights.
        self.module.eval()
        self.policy, self.value_head = policy, value_head
        self.ref_mode = self._reference_mode()
        rows = self.c.prompts_per_iteration * self.c.num_generations
        if self.spec.policy_update == "natural":
            self.strategy = None
            self.policy_params = [p for p in policy.parameters() if p.requires_grad]
            self.critic_opt = torch.optim.AdamW(value_head.parameters(), lr=c.critic_learning_rate or c.learning_rate)
        else:
            epochs, n_mb = self.passes()
            params = [p for p in self.module.parameters() if p.requires_grad]
            micro = math.ceil(rows / n_mb / self.world)
            self.strategy = Strategy(self.module, params, self.job, self.world, micro,
                                     self.num_iterations * epochs * n_mb, self.device)

    def _reference_mode(self) -> Optional[str]:
        """Where reference log-probs come from: the actor, the policy without adapters, or nowhere."""
        if self.roles.reference is not None:
            return "actor"
        if self.c.needs_reference and self.c.use_peft:
            return "adapters"
        return None

    def _kl_controller(self):
        from fnsft.rl import AdaptiveKLController, FixedKLController

        c = self.c
        if c.kl_target:
            return AdaptiveKLController(c.kl_coef, c.kl_target, c.kl_horizon)
        return FixedKLController(c.kl_coef)

    # The loop ---------------------------------------------------------------------------
    def next_rows(self, rows: list[dict]) -> list[dict]:
        out = []
        for _ in range(self.c.prompts_per_iteration):
            if not self.order:
                self.order = list(range(len(rows)))
                self.rng.shuffle(self.order)
            out.append(rows[self.order.pop()])
        return out

    def train(self) -> None:
        import ray
        import ray.train

        c = self.c
        rows = ray.get(self.job.data["prompts"]) if self.rank == 0 else None
        eval_ref = self.job.data.get("eval_prompts")
        eval_rows = (ray.get(eval_ref) if eval_ref is not None else []) if self.rank == 0 else []
        if self.rank == 0:  # the driver started the actors without waiting for them
            self.timings["roles_wait_s"] = self.roles.wait_ready()
        self.t_start = time.time()
        if self.rank == 0 and self.start_iteration:
            self.push_weights(self.start_iteration)  # the actors still hold the pre-failure weights
            say(f"[{self.job.stage_name}] resumed from the checkpoint at iteration {self.start_iteration}")
        if eval_rows and c.eval_before_training and not self.start_iteration:
            self.evaluate(eval_rows, 0)
        for it in range(self.start_iteration, self.num_iterations):
            t_iter = time.perf_counter()
            payload = None
            if self.rank == 0:
                from fnsft.actors.rollout import collect_rollout

                rollout = collect_rollout(
                    self.roles, self.next_rows(rows), num_generations=c.num_generations,
                    sampling=c.sampling(), pad_id=self.tokenizer.pad_token_id, seed=c.seed * 100003 + it * 997,
                    reference_temperature=c.temperature, use_reference_actor=self.ref_mode == "actor")
                payload = {"arrays": rollout.arrays, "timings": rollout.timings}
            payload = _broadcast(payload, self.rank)
            t_train = time.perf_counter()
            stats = self.update(payload["arrays"], it)
            timings = dict(payload["timings"])
            timings["training_s"] = time.perf_counter() - t_train
            if self.rank == 0:
                stats.update(self.push_weights(it + 1))
                timings["weight_sync_s"] = stats.pop("weight_sync_s")
                timings["iteration_s"] = time.perf_counter() - t_iter
                metrics = self.iteration_metrics(it, rollout, stats, timings)
                self.history.append(metrics)
                self.print_progress(metrics)
                last = it + 1 == self.num_iterations
                if eval_rows and (last or (c.eval_steps and (it + 1) % c.eval_steps == 0)):
                    metrics.update(self.evaluate(eval_rows, it + 1))
            else:
                metrics = {"iteration": it + 1}
            numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
            if c.save_steps and (it + 1) % c.save_steps == 0 and it + 1 < self.num_iterations:
                self.save_checkpoint(it + 1, numbers)
            elif c.logging_steps and ((it + 1) % c.logging_steps == 0 or it + 1 == self.num_iterations):
                ray.train.report(numbers)

    def save_checkpoint(self, iteration: int, metrics: dict) -> None:
        """Every rank: write the loop's state and report it to Ray Train (a restart resumes here)."""
        import shutil

        import ray.train

        from fnsft.distributed import rl_checkpoint

        t0 = time.perf_counter()
        path = os.path.join(self.c.output_dir, ".rl_checkpoints", f"iteration-{iteration}-rank{self.rank}")
        shutil.rmtree(path, ignore_errors=True)
        rl_checkpoint.save(self, iteration, path)
        ckpt = ray.train.Checkpoint.from_directory(path) if os.listdir(path) else None
        # Every rank's files go into one directory in Ray's storage (DeepSpeed: one shard each).
        ray.train.report({**metrics, "checkpoint_iteration": iteration}, checkpoint=ckpt,
                         checkpoint_dir_name=f"iteration-{iteration:06d}")
        shutil.rmtree(path, ignore_errors=True)  # Ray Train keeps its copy in the run's storage
        if self.rank == 0:
            say(f"[{self.job.stage_name}] checkpoint at iteration {iteration} ({time.perf_counter() - t0:.1f}s)")

    def restore(self) -> None:
        """Every rank: continue from Ray Train's latest checkpoint, if the worker group restarted."""
        import ray.train

        from fnsft.distributed import rl_checkpoint

        ckpt = ray.train.get_checkpoint()
        if ckpt is None:
            return
        with ckpt.as_directory() as d:
            self.start_iteration = rl_checkpoint.load(self, d)

    # Held-out evaluation ----------------------------------------------------------------
    def evaluate(self, eval_rows: list[dict], iteration: int) -> dict[str, float]:
        """Rank 0: greedy completions of the held-out prompts, scored by the reward actor.

        The same reward terms as training, one completion per prompt at temperature 0, so the
        number moves only when the policy does (the training reward also moves with sampling
        noise and with which prompts an iteration drew).
        """
        import numpy as np

        from fnsft.actors.rollout import collect_rollout

        c = self.c
        sampling = {**c.sampling(), "temperature": 0.0, "max_new_tokens": c.eval_max_new_tokens or c.max_new_tokens}
        t0 = time.perf_counter()
        r = collect_rollout(self.roles, eval_rows, num_generations=1, sampling=sampling,
                            pad_id=self.tokenizer.pad_token_id, use_reference_actor=False)
        out = {"eval/reward": float(np.mean(r.arrays["scores"])),
               "eval/response_length": float(np.mean(r.arrays["completion_mask"].sum(axis=1)))}
        out.update({f"eval/{label}": float(np.mean(v)) for label, v in r.components.items()})
        seconds = time.perf_counter() - t0
        self.evals.append({"iteration": iteration, **out, "eval_s": seconds,
                           "samples": [{"prompt": str(p)[:200], "completion": t[:200]}
                                       for p, t in zip(r.prompts[:3], r.completions[:3])]})
        terms = " ".join(f"{k[5:]}={v:.3f}" for k, v in out.items() if k not in ("eval/reward", "eval/response_length"))
        say(f"[{self.job.stage_name}] eval @ iter {iteration}: reward={out['eval/reward']:.3f} {terms} "
             f"len={out['eval/response_length']:.1f} ({len(eval_rows)} held-out prompts, greedy, {seconds:.1f}s)")
        return out

    # One update -------------------------------------------------------------------------
    def _to_device(self, arrays: dict) -> dict:
        from fnsft.actors.modeling import to_torch

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
        if self.spec.uses_critic or self.spec.policy_update == "natural":
            return True
        epochs, n_mb = self.passes()
        kl_in_reward = self.settings.kl_in_reward and self.ref_mode is not None and self.kl_ctl.value > 0
        return epochs * n_mb > 1 or kl_in_reward

    def _old_pass(self, full: dict, need_old: bool = True) -> dict:
        """Log-probs (and values, reference log-probs) before the update, on this rank's shard, gathered."""
        import torch

        from fnsft.actors.modeling import completion_forward

        keys = ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask")
        shard = {k: full[k][self.rank::self.world] for k in keys}
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
        return {k: v.to(self.device) for k, v in _gather_rows(out, self.world, len(full["completion_ids"])).items()}

    def update(self, arrays: dict, it: int) -> dict[str, float]:
        from fnsft.rl.loop import compute_advantages, sequence_kl

        full = self._to_device(arrays)
        mask = full["completion_mask"].float()
        t_ref = time.perf_counter()
        full.update(self._old_pass(full, need_old=self._needs_old_pass()))
        old_pass_s = time.perf_counter() - t_ref
        ref = full.get("ref_logprobs")
        kl_coef = self.kl_ctl.value
        adv = compute_advantages(self.spec, self.settings, full["scores"].float(), mask, full.get("old_logprobs"),
                                 ref, full.get("old_values"), kl_coef)
        full.update(adv)
        stats: dict[str, float] = {"old_pass_s": old_pass_s, "kl_coef": kl_coef}
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
        keys = [k for k in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "old_logprobs",
                            "advantages", "returns", "old_values", "ref_logprobs") if k in full]
        for _ in range(epochs):
            perm = torch.randperm(n, generator=gen) if n_mb > 1 or epochs > 1 else torch.arange(n)
            for chunk in perm.chunk(n_mb):
                idx = chunk[self.rank::self.world].to(self.device)
                mb = {k: full[k][idx] for k in keys}
                out = self.strategy(mb, c.temperature, need_logits=True, with_value=spec.uses_critic)
                if "old_logprobs" not in mb:  # one on-policy step: these weights sampled the batch
                    mb["old_logprobs"] = out["logprobs"].detach()
                    if "ref_logprobs" in mb:
                        kl_rows.append(sequence_kl(mb["old_logprobs"], mb["ref_logprobs"],
                                                   mb["completion_mask"].float(), "k1"))
                logits = out["logits"] if c.entropy_coef else out["logits"].detach()
                loss, st = policy_objective(spec, self.settings, out["logprobs"], mb, self.kl_ctl.value,
                                            values=out.get("values"), logits=logits)
                norms.append(self.strategy.backward_step(loss))
                stats.append({k: float(v) for k, v in st.items()})
        if kl_rows:
            stats.append({"kl": float(torch.cat(kl_rows).mean())})
        result = _mean_stats(stats, self.device)
        finite = [x for x in norms if math.isfinite(x)]
        if finite:
            result["grad_norm"] = sum(finite) / len(finite)
        return result

    def _trpo_update(self, full: dict) -> dict[str, float]:
        """Rank 0: one TRPO step on the whole batch, then critic steps; parameters broadcast."""
        import torch

        from fnsft.actors.modeling import completion_forward
        from fnsft.rl import kl_from_logits, trpo_step, trpo_surrogate_loss, value_loss
        from fnsft.rl.kl import kl_penalty
        from fnsft.rl.losses import entropy_from_logits
        from fnsft.rl.masked import masked_mean

        c = self.c
        result: dict[str, float] = {}
        if self.rank == 0:
            keys = ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask")
            batch = {k: full[k] for k in keys}
            mask = full["completion_mask"].float()
            ref = full.get("ref_logprobs")
            kl_in_loss = not self.settings.kl_in_reward and ref is not None and self.kl_ctl.value > 0
            with torch.no_grad():
                old = completion_forward(self.policy, batch, c.temperature, need_logits=True)
            old_logits = old["logits"].detach()

            def loss_fn():
                out = completion_forward(self.policy, batch, c.temperature)
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
                values = self.value_head(hidden).squeeze(-1).float()
                vloss, _ = value_loss(values, full["old_values"], full["returns"], mask, None)
                self.critic_opt.zero_grad(set_to_none=True)
                vloss.backward()
                self.critic_opt.step()
            result["value_loss"] = float(vloss.detach())
        dist = _dist()
        if dist is not None:
            with torch.no_grad():
                for p in list(self.policy_params) + list(self.value_head.parameters()):
                    dist.broadcast(p.data, src=0)
        return result

    # Weight sync ------------------------------------------------------------------------
    def push_weights(self, version: int) -> dict[str, float]:
        """Rank 0: the new policy weights (adapters only with LoRA) to every generation actor."""
        from fnsft.actors.generation import push_policy_weights

        return push_policy_weights(self.roles.generation, self.policy, self.c.use_peft, version,
                                   self.c.verify_weight_sync)

    # Metrics ----------------------------------------------------------------------------
    def iteration_metrics(self, it: int, rollout, stats: dict, timings: dict) -> dict[str, Any]:
        import numpy as np

        scores = rollout.arrays["scores"]
        lengths = rollout.arrays["completion_mask"].sum(axis=1)
        m: dict[str, Any] = {
            "iteration": it + 1,
            "reward_mean": float(np.mean(scores)),
            "reward_std": float(np.std(scores)),
            "response_length": float(np.mean(lengths)),
            "truncated_share": float(np.mean(rollout.truncated)) if rollout.truncated else 0.0,
        }
        for label, values in rollout.components.items():
            m[f"reward/{label}"] = float(np.mean(values))
        m.update({k: v for k, v in stats.items()})
        m.update({f"time/{k}": v for k, v in timings.items()})
        m["sample_completion"] = rollout.completions[0][:200] if rollout.completions else ""
        return m

    def print_progress(self, m: dict) -> None:
        parts = [f"[{self.job.stage_name}] iter {m['iteration']}/{self.num_iterations}",
                 f"reward={m['reward_mean']:.3f}±{m['reward_std']:.3f}"]
        for key, fmt in (("kl", "kl={:.4f}"), ("entropy", "entropy={:.2f}"), ("clip_fraction", "clip={:.3f}"),
                         ("value_loss", "vloss={:.4f}"), ("trpo_kl", "step_kl={:.4f}")):
            if key in m:
                parts.append(fmt.format(m[key]))
        parts.append(f"len={m['response_length']:.1f}")
        t = " ".join(f"{k[5:-2]} {v:.2f}s" for k, v in m.items()
                     if k.startswith("time/") and k not in ("time/iteration_s",))
        parts.append(f"| {t} | {m['time/iteration_s']:.2f}s/iter")
        say(" ".join(parts))

    def summary_metrics(self) -> dict[str, Any]:
        h = self.history
        k = min(3, len(h))
        out: dict[str, Any] = {"algorithm": self.spec.name, "iterations": len(h),
                               "strategy": self.strategy.kind if self.strategy else "torch (trpo on rank 0)",
                               "reference": self.ref_mode or "none"}
        if h:
            out["reward_start"] = sum(x["reward_mean"] for x in h[:k]) / k
            out["reward_end"] = sum(x["reward_mean"] for x in h[-k:]) / k
            for key in sorted({key for x in h for key in x}):
                vals = [x[key] for x in h if isinstance(x.get(key), (int, float))]
                if key.startswith("time/") and vals:
                    out[f"{key}_mean"] = sum(vals) / len(vals)
            last = h[-1]
            out.update({f"final_{key}": v for key, v in last.items()
                        if isinstance(v, (int, float)) and not key.startswith(("time/", "eval/")) and key != "iteration"})
            if any("trpo_kl" in x for x in h):
                out["trpo_kl_max"] = max(x.get("trpo_kl", 0.0) for x in h)
                out["policy_kl_after_update_max"] = max(x.get("policy_kl_after_update", 0.0) for x in h)
            if any("weight_sync_mismatches" in x for x in h):
                out["weight_sync_mismatches"] = sum(x.get("weight_sync_mismatches", 0) for x in h)
        if self.evals:
            first, last = self.evals[0], self.evals[-1]
            for key in (k for k in last if k.startswith("eval/")):
                name = key[5:]
                out[f"eval_{name}_end"] = last[key]
                if first is not last and key in first:
                    out[f"eval_{name}_start"] = first[key]
        if self.start_iteration:
            out["resumed_from_iteration"] = self.start_iteration
        out["loop_seconds"] = time.time() - self.t_start
        out.update({f"worker_{k}": v for k, v in self.timings.items()})
        return out

    # Hand-back --------------------------------------------------------------------------
    def hand_back(self) -> None:
        from fnsft.distributed.hf_worker import save_and_hand_back
        from fnsft.utils.plots import plot_series

        c = self.c
        metrics = self.summary_metrics()
        artifacts: dict[str, str] = {}
        hist_path = os.path.join(c.output_dir, "rl_history.json")
        with open(hist_path, "w") as f:
            json.dump(self.history, f, indent=1)
        artifacts["rl_history"] = hist_path
        if self.evals:
            eval_path = os.path.join(c.output_dir, "rl_eval.json")
            with open(eval_path, "w") as f:
                json.dump(self.evals, f, indent=1)
            artifacts["rl_eval"] = eval_path
        series = {key: [(x["iteration"], x[key]) for x in self.history if key in x]
                  for key in ("reward_mean", "kl", "entropy", "response_length")}
        series["eval_reward"] = [(x["iteration"], x["eval/reward"]) for x in self.evals]
        png = plot_series({k: v for k, v in series.items() if v}, os.path.join(c.output_dir, "reward_curve.png"),
                          f"{self.job.stage_name} ({self.spec.name})")
        if png:
            artifacts["reward_curve"] = png
        model = self.policy.merge_and_unload() if c.use_peft else self.policy
        save_and_hand_back(self.job, model, self.tokenizer, metrics, artifacts)


def rl_train_worker(config: dict) -> None:
    """Ray Train ``train_loop_per_worker`` of the RL stage."""
    import ray.train
    import torch

    from fnsft.utils.console import quiet_libraries

    job = config["job"]
    t0 = time.time()
    quiet_libraries()
    _quiet_train_reports()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    if job.use_gpu:
        import ray.train.torch

        device = ray.train.torch.get_device()
    else:
        device = torch.device("cpu")
    os.makedirs(job.stage_config.output_dir, exist_ok=True)
    from fnsft.distributed.hf_worker import mark_worker

    mark_worker(job.stage_config.output_dir, rank)
    trainer = RLTrainer(job, rank, world, device)
    trainer.setup()
    trainer.restore()
    trainer.timings["setup_s"] = time.time() - t0
    trainer.train()
    if rank == 0:
        trainer.hand_back()
    ray.train.report({"done": 1.0})
