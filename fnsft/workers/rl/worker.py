"""The Ray Train worker of the RL stage: one Train job runs every iteration of the loop.

Reads top to bottom like a recipe: :func:`rl_train_worker` → ``RLTrainer.setup`` (policy,
critic, :class:`~fnsft.workers.rl.strategy.Strategy`) → ``restore`` (after a worker restart)
→ ``train``, each iteration:

1. rank 0 collects a rollout from the role actors (:func:`fnsft.actors.rollout.collect_rollout`:
   generate, score, reference log-probs) and broadcasts it to every rank — with
   ``rl.async_rollout`` it takes one started while the previous updates ran
   (:class:`~fnsft.workers.rl.async_rollouts.AsyncRollouts`);
2. every rank runs the update on its shard (:class:`~fnsft.workers.rl.learner.RLLearner`:
   old log-probs, advantages, gradient or TRPO step);
3. rank 0 pushes the new weights to the generation actors, records the iteration's metrics
   and progress line, and evaluates on held-out prompts every ``eval_steps``
   (:class:`~fnsft.workers.rl.report.RLReport`);
4. every ``save_steps``, a checkpoint (:mod:`fnsft.workers.rl.checkpoint`);

→ ``hand_back`` (rank 0: history, plots, the trained weights to the driver).
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from typing import Optional

from fnsft.actors.serving import WeightPusher
from fnsft.workers.rl.learner import RLLearner, policy_value_module
from fnsft.workers.rl.recovery import rollout_with_recovery
from fnsft.workers.rl.report import RLReport
from fnsft.workers.rl.strategy import Strategy, broadcast_object
from fnsft.utils.console import say

log = logging.getLogger("fnsft.worker")


class RLTrainer(RLLearner, RLReport):
    """One worker's share of the RL loop; the update and the reporting come from the two mixins."""

    def __init__(self, job, rank: int, world: int, device):
        import torch

        from fnsft.models.loading import load_tokenizer
        from fnsft.models.precision import resolve_precision
        from fnsft.rl import get_algorithm
        from fnsft.rl.loop import LossSettings

        self.job, self.c = job, job.stage_config
        self.roles = job.roles
        self.rank, self.world, self.device = rank, world, device
        self.spec = get_algorithm(self.c.algorithm)
        # float32 master weights (policy, adapters, value head), compute in the requested dtype.
        self.precision = resolve_precision(job.torch_dtype, job.use_gpu, job.model)
        self.dtype = self.precision.compute_dtype
        self.tokenizer = load_tokenizer(job.model.source, job.model.trust_remote_code, self.c.chat_template)
        from fnsft.rl.knobs import resolve_knobs

        c = self.c
        knobs = resolve_knobs(c)  # the GRPO family's knobs (clip_range is their epsilon)
        self.settings = LossSettings(
            clip_range=knobs.epsilon, clip_range_value=c.clip_range_value, vf_coef=c.vf_coef,
            entropy_coef=c.entropy_coef, kl_in_reward=c.kl_in_reward_resolved, kl_estimator=c.kl_estimator,
            gamma=c.gamma, lam=c.lam, num_generations=c.num_generations,
            whiten_advantages=c.whiten_advantages, loss_agg=c.loss_agg, beta=c.beta, knobs=knobs)
        self.num_iterations = c.max_steps if c.max_steps > 0 else c.num_iterations
        self.history: list[dict] = []
        self.evals: list[dict] = []  # held-out evaluations (iteration 0 = before training)
        self.eval_texts: dict[int, list[str]] = {}  # every greedy held-out answer, per evaluated iteration
        self.start_iteration = 0  # > 0 after a restart from a checkpoint
        self.timings: dict[str, float] = {}
        self.kl_ctl = self._kl_controller()
        self.rng = random.Random(c.seed)
        self.order: list[int] = []
        # Rank 0's pushes to the generation actors; it keeps the last one to resend after a restart.
        self.pusher = WeightPusher(self.roles.generation, c.use_peft, c.verify_weight_sync) if rank == 0 else None
        torch.manual_seed(c.seed)

    # Setup ------------------------------------------------------------------------------
    def setup(self) -> None:
        import torch

        from fnsft.models.forward import ValueHead
        from fnsft.models.precision import disable_dropout, to_master

        c = self.c
        policy = self.job.model.load(dtype=self.precision.load_dtype(trainable=not c.use_peft))
        if self.spec.policy_update == "natural":
            # Fisher-vector products differentiate twice; SDPA's fused CPU/flash kernels cannot.
            policy.set_attn_implementation("eager")
        if c.use_peft:
            from peft import get_peft_model

            from fnsft.models.loading import lora_config

            policy = get_peft_model(policy, lora_config(c))
            to_master(policy)  # adapters float32; the frozen base stays in the compute dtype
        if c.gradient_checkpointing:
            policy.gradient_checkpointing_enable()
        value_head = ValueHead.build(policy.config.hidden_size) if self.spec.uses_critic else None
        self.module = policy_value_module(policy, value_head, self.precision, c.top_k, c.top_p).to(self.device)
        # No dropout in RL (the ratio between two forward passes must be 1 for unchanged weights),
        # but training mode: HF's gradient checkpointing only runs in it.
        disable_dropout(self.module)
        self.module.train()
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
                                     self.num_iterations * epochs * n_mb, self.device, self.precision)

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
    def next_rows(self, rows: list[dict], n: Optional[int] = None) -> list[dict]:
        out = []
        for _ in range(n or self.c.prompts_per_iteration):
            if not self.order:
                self.order = list(range(len(rows)))
                self.rng.shuffle(self.order)
            out.append(rows[self.order.pop()])
        return out

    def train(self) -> None:
        import ray

        c = self.c
        rows = ray.get(self.job.data["prompts"]) if self.rank == 0 else None
        eval_ref = self.job.data.get("eval_prompts")
        eval_rows = (ray.get(eval_ref) if eval_ref is not None else []) if self.rank == 0 else []
        if self.rank == 0:  # the driver started the actors without waiting for them
            self.timings["roles_wait_s"] = self.wait_for_roles()
        self.t_start = time.time()
        if self.rank == 0 and self.start_iteration:
            self.push_weights(self.start_iteration)  # the actors still hold the pre-failure weights
            say(f"[{self.job.stage_name}] resumed from the checkpoint at iteration {self.start_iteration}")
        if eval_rows and c.eval_before_training and not self.start_iteration:
            self.evaluate(eval_rows, 0)
        # rl.async_rollout: rank 0 keeps up to max_staleness rollouts running ahead of the update.
        rollouts = self.async_rollouts(rows) if self.rank == 0 and c.async_rollout.enabled else None
        try:
            self.run_iterations(rows, eval_rows, rollouts)
        finally:
            if rollouts is not None:
                rollouts.close()
        if self.pusher is not None:
            self.wait_for_acks()
            self.pusher.settle()  # the last push reached every actor (or its error surfaces here)

    def collect(self, it: int, batch: list[dict], submitted=None, redraw: int = 0):
        """Rank 0: iteration ``it``'s rollout of the prompts ``batch`` from the role actors — one
        turn each, or multi-turn episodes with ``rl.environment`` (:mod:`fnsft.envs`). ``redraw``:
        dynamic sampling's n-th extra rollout of the iteration (its own seed)."""
        from fnsft.envs.rollout import rollout_collector, transcripts_path

        c = self.c
        sampling = {**c.sampling(), "return_logprobs": True} if c.behavior_logprobs else c.sampling()
        collect_rollout = rollout_collector(self.roles, self.tokenizer,
                                            None if redraw else transcripts_path(c.output_dir, it, self.num_iterations))
        extra = {} if submitted is None else {"submitted": submitted}  # async only (no environment there)
        return collect_rollout(
            self.roles, batch, num_generations=c.num_generations, sampling=sampling,
            pad_id=self.tokenizer.pad_token_id, seed=c.seed * 100003 + it * 997 + 7919 * redraw,
            reference_temperature=c.temperature, use_reference_actor=self.ref_mode == "actor",
            score_chunks=c.rollout_chunks(), timeout_s=c.role_timeout_s, **extra)

    def collect_with_recovery(self, it: int, batch: list[dict], redraw: int = 0):
        """Rank 0: :meth:`collect`, redone after a role actor restarted; ``(rollout, recovery stats)``."""
        return rollout_with_recovery(lambda: self.collect(it, batch, redraw=redraw), self.roles, self.pusher,
                                     self.job.stage_name)

    def filter(self, rollout, recovered: dict, rows: list[dict], it: int):
        """Rank 0: truncated completions out of the loss; DAPO's dynamic sampling refills groups of
        equal rewards with extra rollouts (synchronous only), whose recoveries add to ``recovered``."""
        from fnsft.workers.rl.rollout_filter import filter_rollout

        def collect_more(n, r):
            extra, rec = self.collect_with_recovery(it, self.next_rows(rows, n), redraw=r)
            for key, value in rec.items():
                recovered[key] = recovered.get(key, 0.0) + value
            return extra

        return filter_rollout(rollout, self.settings.knobs, self.c.num_generations, self.tokenizer.pad_token_id,
                              collect_more)

    def async_rollouts(self, rows: list[dict]):
        """Rank 0: the queue of rollouts that run ahead of the learner (rl.async_rollout)."""
        from fnsft.workers.rl.async_rollouts import AsyncRollouts

        def draw(it: int):  # the prompt order before this iteration's draw: a checkpoint keeps it
            state = (list(self.order), self.rng.getstate())
            return self.next_rows(rows), state

        return AsyncRollouts(self.c.async_rollout.max_staleness, self.num_iterations, draw, self.collect,
                             self.collect_with_recovery, self.c.role_timeout_s)

    def run_iterations(self, rows: list[dict], eval_rows: list[dict], rollouts=None) -> None:
        """Every rank: the iterations from ``start_iteration`` on (rollout, update, push, report);
        ``rollouts``: rank 0's :class:`~fnsft.workers.rl.async_rollouts.AsyncRollouts` (async only)."""
        import ray.train

        c = self.c
        for it in range(self.start_iteration, self.num_iterations):
            t_iter = time.perf_counter()
            payload = None
            if self.rank == 0:
                if rollouts is not None:
                    t_wait = time.perf_counter()
                    rollout, recovered = rollouts.take(it)
                    # what the learner still waited for: the rest of the rollout ran behind the last update
                    rollout.timings["rollout_wait_s"] = time.perf_counter() - t_wait
                else:
                    rollout, recovered = self.collect_with_recovery(it, self.next_rows(rows))
                rollout, filtered = self.filter(rollout, recovered, rows, it)
                payload = {"arrays": rollout.arrays, "timings": rollout.timings}
            payload = broadcast_object(payload, self.rank)
            t_train = time.perf_counter()
            stats = self.update(payload["arrays"], it)
            timings = dict(payload["timings"])
            timings["training_s"] = time.perf_counter() - t_train
            if self.rank == 0:
                stats.update(filtered)
                if c.async_rollout.enabled:  # how many versions each sample lags the learner (= it)
                    from fnsft.rl.off_policy import staleness_counts

                    stats.update(staleness_counts(rollout.arrays["policy_version"], it, c.async_rollout.max_staleness))
                stats.update(self.push_weights(it + 1))
                for key, value in recovered.items():  # role actors restarted during this rollout: the
                    stats[key] = stats.get(key, 0.0) + value  # resync's mismatches add to the push's
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
                # Async: the prompts of the batches in flight are drawn again after a resume.
                self.save_checkpoint(it + 1, numbers, rollouts.draw_state(it + 1) if rollouts is not None else None)
            elif c.logging_steps and ((it + 1) % c.logging_steps == 0 or it + 1 == self.num_iterations):
                ray.train.report(numbers)

    # Bounded waits on the role actors (rl.role_timeout_s) -------------------------------------
    def wait_for_roles(self) -> float:
        """Rank 0: seconds until every role actor is constructed (a StageError past role_timeout_s)."""
        import ray

        try:
            return self.roles.wait_ready(self.c.role_timeout_s)
        except ray.exceptions.GetTimeoutError:
            from fnsft.actors.rollout import role_timeout

            raise role_timeout("role", "to start (load their models)", self.c.role_timeout_s) from None

    def wait_for_acks(self) -> None:
        """Rank 0: the generation actors acknowledged the pending weight push (bounded)."""
        from fnsft.actors.rollout import bounded_wait

        bounded_wait(self.pusher.pending, "generation", "to acknowledge a weight push", self.c.role_timeout_s)

    # Weight sync and checkpoints ----------------------------------------------------------
    def push_weights(self, version: int) -> dict[str, float]:
        """Rank 0: the new policy weights (adapters only with LoRA) to every generation actor;
        pipelined with the next rollout (:class:`~fnsft.actors.serving.WeightPusher`)."""
        self.wait_for_acks()  # the previous push's acks, collected by push() below
        return self.pusher.push(self.policy, version)

    def save_checkpoint(self, iteration: int, metrics: dict, draw_state=None) -> None:
        """Every rank: write the loop's state and report it to Ray Train (a restart resumes here);
        ``draw_state``: the prompt order before the in-flight rollouts' prompts were drawn (async)."""
        import shutil

        import ray.train

        from fnsft.workers.rl import checkpoint as rl_checkpoint

        t0 = time.perf_counter()
        path = os.path.join(self.c.output_dir, ".rl_checkpoints", f"iteration-{iteration}-rank{self.rank}")
        shutil.rmtree(path, ignore_errors=True)
        rl_checkpoint.save(self, iteration, path, draw_state)
        ckpt = ray.train.Checkpoint.from_directory(path) if os.listdir(path) else None
        # Every rank's files go into one directory in Ray's storage (DeepSpeed: one shard each).
        ray.train.report({**metrics, "checkpoint_iteration": iteration}, checkpoint=ckpt,
                         checkpoint_dir_name=f"iteration-{iteration:06d}")
        shutil.rmtree(path, ignore_errors=True)  # Ray Train keeps its copy in the run's storage
        if self.rank == 0:
            say(f"[{self.job.stage_name}] checkpoint at iteration {iteration} ({time.perf_counter() - t0:.1f}s)")

    def restore(self) -> None:
        """Every rank: continue from the newest complete checkpoint, if the worker group restarted
        or the driver was rerun after a crash (read in place: fnsft.workers.resume)."""
        from fnsft.workers.rl import checkpoint as rl_checkpoint
        from fnsft.workers.resume import restored_checkpoint

        with restored_checkpoint() as d:
            if d is not None:
                self.start_iteration = rl_checkpoint.load(self, d)


def rl_train_worker(config: dict) -> None:
    """Ray Train ``train_loop_per_worker`` of the RL stage."""
    import ray.train
    import torch

    from fnsft.compat.ray_train import quiet_train_report_logs
    from fnsft.utils.console import quiet_libraries

    job = config["job"]
    t0 = time.time()
    quiet_libraries()
    quiet_train_report_logs()  # Ray Train's INFO line per report: the loop prints its own
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    if job.use_gpu:
        import ray.train.torch

        device = ray.train.torch.get_device()
    else:
        device = torch.device("cpu")
    os.makedirs(job.stage_config.output_dir, exist_ok=True)
    from fnsft.workers.hand_back import mark_worker

    mark_worker(job.stage_config.output_dir, rank)
    trainer = RLTrainer(job, rank, world, device)
    trainer.setup()
    from fnsft.workers.startup_marks import freeze_long_lived_objects

    freeze_long_lived_objects(collect_first=True)  # libraries, models, optimizer: as long as this worker
    trainer.restore()
    trainer.timings["setup_s"] = time.time() - t0
    trainer.train()
    from fnsft.workers.stats import gather_worker_nodes

    worker_nodes = gather_worker_nodes()  # a collective: every rank
    if rank == 0:
        trainer.hand_back(worker_nodes)
    ray.train.report({"done": 1.0})
