"""Reinforcement learning from rewards: PPO, A2C, TRPO, GRPO, RLOO on Ray (one Train job).

YAML (``stage_configs.rl``)::

    dataset_name_or_path: examples/arithmetic/train.jsonl   # prompt-only rows; extra columns
    algorithm: grpo               # ppo | a2c | trpo | grpo | rloo    # reach the reward functions
    num_iterations: 30            # generate -> score -> update -> push weights
    prompts_per_iteration: 8
    num_generations: 4            # completions per prompt (the group for grpo/rloo)
    max_new_tokens: 16
    learning_rate: 1e-5
    kl_coef: 0.05                 # add kl_target: 6.0 for an adaptive coefficient
    rewards:
      - {type: exact_match, column: answer, extract: last_number}
      - {type: regex, pattern: '^\\s*-?\\d+\\s*$', weight: 0.2}
    generation: {num_replicas: 1, num_cpus: 1}

The driver starts the role actors (:mod:`fnsft.actors`: generation replicas, a reward actor,
a reference actor unless the LoRA policy without adapters serves), then runs one Train job
(:func:`fnsft.distributed.rl_worker.rl_train_worker`) that drives the loop. See docs/rl.md.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from fnsft.actors.group import RoleResources
from fnsft.errors import ConfigError
from fnsft.stages.base import StageResult
from fnsft.stages.training import TrainStage, TrainStageConfig

log = logging.getLogger("fnsft")


@dataclass
class GenerationSettings(RoleResources):
    """``rl.generation``: the generation actors."""

    engine: Literal["auto", "hf", "vllm"] = field(
        default="auto", metadata={"help": "hf: transformers generate; vllm: vLLM (GPU, only when named); auto: hf (vLLM is never picked silently)."})
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


@dataclass(kw_only=True)
class RLConfig(TrainStageConfig):
    dataset_name_or_path: str = field(
        metadata={"help": "Prompts: .jsonl/.json/.csv/.parquet with a prompt/question/problem/messages column; "
                          "other columns are passed to reward functions."})
    column_mapping: dict[str, str] = field(default_factory=dict, metadata={"help": "Rename columns first."})
    algorithm: str = field(default="grpo", metadata={"help": "ppo | a2c | trpo | grpo | rloo | online_dpo."})
    num_iterations: int = field(default=100, metadata={"help": "RL iterations (max_steps > 0 overrides it)."})
    prompts_per_iteration: int = field(default=8, metadata={"help": "Prompts sampled per iteration."})
    num_generations: int = field(default=4, metadata={"help": "Completions per prompt (>= 2 for grpo/rloo)."})
    max_new_tokens: int = field(default=64, metadata={"help": "Completion length limit."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature (> 0)."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling."})
    top_k: int = field(default=0, metadata={"help": "Top-k sampling (0: off)."})
    apply_chat_template: bool = field(
        default=True, metadata={"help": "Wrap string prompts as a user turn with the chat template."})
    ppo_epochs: int = field(default=2, metadata={"help": "Passes over each batch (ppo, grpo); critic steps for trpo."})
    num_mini_batches: int = field(default=2, metadata={"help": "Minibatches per pass (ppo, grpo)."})
    clip_range: float = field(default=0.2, metadata={"help": "PPO/GRPO ratio clip epsilon."})
    clip_range_value: Optional[float] = field(default=0.2, metadata={"help": "PPO value clipping (null: off)."})
    vf_coef: float = field(default=0.1, metadata={"help": "Weight of the value loss (ppo, a2c)."})
    entropy_coef: float = field(default=0.0, metadata={"help": "Entropy bonus weight."})
    gamma: float = field(default=1.0, metadata={"help": "Discount (GAE)."})
    lam: float = field(default=0.95, metadata={"help": "GAE lambda."})
    whiten_advantages: bool = field(default=True, metadata={"help": "Normalise GAE advantages per batch."})
    loss_agg: Literal["token", "sequence"] = field(default="token", metadata={"help": "GRPO loss averaging."})
    max_kl: float = field(default=0.01, metadata={"help": "TRPO trust region: max KL(old || new) per update."})
    cg_iters: int = field(default=10, metadata={"help": "TRPO conjugate-gradient iterations."})
    trpo_damping: float = field(default=0.1, metadata={"help": "TRPO Fisher damping."})
    backtrack_iters: int = field(default=10, metadata={"help": "TRPO line-search steps."})
    critic_learning_rate: Optional[float] = field(default=None, metadata={"help": "TRPO critic LR (default learning_rate)."})
    beta: float = field(default=0.1, metadata={"help": "online_dpo: the DPO beta (strength of the reference)."})
    kl_coef: float = field(default=0.05, metadata={"help": "KL-to-reference coefficient (initial value when adaptive)."})
    kl_target: Optional[float] = field(default=None, metadata={"help": "Adaptive KL: target per-sequence KL (null: fixed)."})
    kl_horizon: float = field(default=10000.0, metadata={"help": "Adaptive KL horizon (samples)."})
    kl_in_reward: Optional[bool] = field(
        default=None, metadata={"help": "KL as a reward penalty (true) or a loss term (false); default: loss for grpo, reward otherwise."})
    kl_estimator: Literal["k1", "k2", "k3", "abs"] = field(default="k1", metadata={"help": "KL estimator in the reward."})
    rewards: list[dict[str, Any]] = field(
        default_factory=list, metadata={"help": "Weighted reward terms: [{type: exact_match|regex|length_penalty|"
                                                 "target_chars|target_word|function|model, weight, ...}]."})
    generation: GenerationSettings = field(default_factory=GenerationSettings, metadata={"help": "Generation actors."})
    reward: RoleResources = field(default_factory=lambda: RoleResources(num_cpus=0.25),
                                  metadata={"help": "The reward actor's resources."})
    reference: ReferenceSettings = field(default_factory=ReferenceSettings, metadata={"help": "Reference log-probs."})
    verify_weight_sync: bool = field(
        default=False, metadata={"help": "Checksum the generation actors' weights after every sync (tests)."})
    # TrainStageConfig defaults that suit RL better
    learning_rate: float = field(default=1e-5, metadata={"help": "Peak learning rate (AdamW)."})
    lr_scheduler_type: str = field(default="constant", metadata={"help": "HF scheduler name."})
    eval_split: float = field(
        default=0.0, metadata={"help": "Share of the prompts held out; their greedy reward is measured before, "
                                       "during (eval_steps) and after training (0: none)."})
    eval_max_new_tokens: Optional[int] = field(
        default=None, metadata={"help": "Completion length for the held-out evaluation (default max_new_tokens)."})
    logging_steps: int = field(
        default=10, metadata={"help": "Report metrics to Ray Train every N iterations (each report waits for "
                                      "Train's controller, ~1-2 s; the progress line prints every iteration)."})
    save_steps: int = field(
        default=10, metadata={"help": "Checkpoint every N iterations (policy, critic, optimizer, loop state); a "
                                      "worker group restarted after a failure, or a rerun after a driver crash, "
                                      "resumes there (0: never)."})

    @property
    def kl_in_reward_resolved(self) -> bool:
        return self.kl_in_reward if self.kl_in_reward is not None else self.algorithm.lower() != "grpo"

    @property
    def needs_reference(self) -> bool:
        if self.algorithm.lower() == "online_dpo":  # the DPO loss is relative to the reference
            return True
        return self.reference.mode != "none" and (self.kl_coef > 0 or bool(self.kl_target))

    def rollout_chunks(self) -> int:
        """``generation.score_chunks`` with 0 resolved: 1 here (rule rewards are instant)."""
        return self.generation.score_chunks or 1

    def sampling(self) -> dict[str, Any]:
        return {"max_new_tokens": self.max_new_tokens, "temperature": self.temperature,
                "top_p": self.top_p, "top_k": self.top_k}


class RLStage(TrainStage):
    """RL from rewards (ppo, a2c, trpo, grpo, rloo): role actors + one Ray Train job."""

    config_class = RLConfig

    @property
    def stage_name(self) -> str:
        return "rl"

    # Validation (no Ray) ------------------------------------------------------------------
    def validate_config(self) -> None:
        from fnsft.distributed.deepspeed_config import deepspeed_in_use
        from fnsft.rl import get_algorithm

        super().validate_config()
        c, key = self.config, self.key
        try:
            spec = get_algorithm(c.algorithm)
        except ConfigError as e:
            raise ConfigError(f"{key}.algorithm: {e}".replace("unknown rl.algorithm", "unknown algorithm")) from None
        self.reward_specs = self.parse_rewards()
        positive = ("num_iterations", "prompts_per_iteration", "num_generations", "max_new_tokens", "ppo_epochs",
                    "num_mini_batches", "cg_iters", "backtrack_iters")
        for name in positive:
            if getattr(c, name) < 1:
                raise ConfigError(f"{key}.{name}: must be >= 1 (got {getattr(c, name)})")
        if c.temperature <= 0:
            raise ConfigError(f"{key}.temperature: must be > 0 for RL sampling (got {c.temperature})")
        if not 0 < c.top_p <= 1:
            raise ConfigError(f"{key}.top_p: must be in (0, 1] (got {c.top_p})")
        if spec.needs_groups and c.num_generations < 2:
            raise ConfigError(f"{key}.num_generations: {spec.name} compares completions of the same prompt; "
                              f"use >= 2 (got {c.num_generations})")
        if c.max_kl <= 0:
            raise ConfigError(f"{key}.max_kl: must be > 0 (got {c.max_kl})")
        if c.kl_coef < 0:
            raise ConfigError(f"{key}.kl_coef: must be >= 0 (got {c.kl_coef})")
        if c.kl_target is not None and c.kl_target <= 0:
            raise ConfigError(f"{key}.kl_target: must be > 0 for adaptive KL, or null for a fixed kl_coef")
        if spec.policy_update == "dpo" and c.reference.mode == "none":
            raise ConfigError(f"{key}.reference.mode: online_dpo compares the policy with a reference; use auto")
        if spec.policy_update == "dpo" and c.beta <= 0:
            raise ConfigError(f"{key}.beta: must be > 0 (got {c.beta})")
        if c.reference.mode == "policy" and not c.use_peft:
            raise ConfigError(f"{key}.reference.mode: 'policy' (adapters disabled) needs use_peft: true; use actor")
        if c.generation.num_replicas < 1:
            raise ConfigError(f"{key}.generation.num_replicas: must be >= 1")
        if c.generation.score_chunks < 0:
            raise ConfigError(f"{key}.generation.score_chunks: must be >= 1, or 0 for the stage's default "
                              f"(got {c.generation.score_chunks})")
        res, ds = self.resources()
        rows = c.prompts_per_iteration * c.num_generations
        if spec.multiple_epochs and rows < c.num_mini_batches * res.num_workers:
            raise ConfigError(
                f"{key}.num_mini_batches: {rows} completions per iteration cannot fill {c.num_mini_batches} "
                f"minibatches x {res.num_workers} workers; raise prompts_per_iteration or lower num_mini_batches")
        if deepspeed_in_use(ds, res.num_workers) and ds.zero_stage == 3 and spec.policy_update != "natural":
            raise ConfigError(f"{key}.deepspeed.zero_stage: the RL stage supports ZeRO 0-2 "
                              "(ZeRO-3 would need parameter gathering for every weight push); use zero_stage 2")
        if c.load_in_4bit or c.load_in_8bit:
            raise ConfigError(f"{key}.load_in_4bit/load_in_8bit: quantized policies are not supported by the RL stage yet")
        self._check_prompts(c.dataset_name_or_path, f"{key}.dataset_name_or_path")
        if c.eval_dataset_path:
            self._check_prompts(c.eval_dataset_path, f"{key}.eval_dataset_path")
        if c.eval_max_new_tokens is not None and c.eval_max_new_tokens < 1:
            raise ConfigError(f"{key}.eval_max_new_tokens: must be >= 1 (got {c.eval_max_new_tokens})")

    def parse_rewards(self) -> list:
        """The checked ``rewards`` terms (RLAIF allows none: its judge is the reward)."""
        from fnsft.rl.rewards import parse_reward_specs

        return parse_reward_specs(self.config.rewards, f"{self.key}.rewards")

    # Hooks for stages built on this one (RLAIF) ------------------------------------------
    def reward_role_kwargs(self, model, dtype: str) -> dict:
        """Extra arguments of the reward actor (RLAIF: its judge); start what they need here."""
        return {}

    def after_train_job(self, roles, out: dict) -> None:
        """Called with the role actors still alive, after the Train job handed back."""

    def finish(self, result: StageResult, model, splits: dict) -> StageResult:
        """Last words on the result (RLAIF: the win rate); stop what ``reward_role_kwargs`` started."""
        return result

    def _check_prompts(self, path: str, key: str) -> None:
        from fnsft.data.files import is_local_path, read_first_rows
        from fnsft.data.prompts import detect_prompt_column

        if is_local_path(path) and not os.path.exists(path):
            raise ConfigError(f"{key}: prompt file {path} not found")
        try:
            rows = read_first_rows(path, n=20)
        except ConfigError:
            raise
        except Exception as e:
            raise ConfigError(f"{key}: cannot read {path}: {type(e).__name__}: {e}") from None
        if rows:
            self._prompt_column = detect_prompt_column(rows, path, self.config.column_mapping or None)
        elif is_local_path(path):
            raise ConfigError(f"{key}: {path} has no rows")

    def describe_plan(self) -> dict[str, Any]:
        c = self.config
        terms = ", ".join(f"{r.get('type')}x{r.get('weight', 1.0):g}" for r in c.rewards)
        return {
            "data": f"{c.dataset_name_or_path} (prompts)",
            "algorithm": f"{c.algorithm}: {c.max_steps if c.max_steps > 0 else c.num_iterations} iterations x "
                         f"{c.prompts_per_iteration} prompts x {c.num_generations} generations, "
                         f"max_new_tokens={c.max_new_tokens}, lr={c.learning_rate:g}",
            "rewards": terms,
            "kl": f"coef {c.kl_coef:g}" + (f" adaptive to {c.kl_target:g}" if c.kl_target else " fixed")
                  + (" in the reward" if c.kl_in_reward_resolved else " in the loss"),
            "roles": f"generation x{c.generation.num_replicas} ({c.generation.engine}), reward, "
                     f"reference {c.reference.mode}",
            "weights": f"LoRA r={c.lora_r}" if c.use_peft else "full fine-tune",
            "eval": self._describe_eval(),
        }

    def _describe_eval(self) -> str:
        c = self.config
        if c.eval_dataset_path:
            source = c.eval_dataset_path
        elif c.eval_split > 0:
            source = f"{c.eval_split:g} of the prompts held out"
        else:
            return "none (set eval_dataset_path or eval_split for a held-out greedy reward)"
        when = "before and after training" if not c.eval_steps else f"before, every {c.eval_steps} iterations, after"
        return f"{source}: greedy reward {when}"

    # Running ----------------------------------------------------------------------------
    def load_prompts(self, path: Optional[str] = None, key: str = "dataset_name_or_path") -> list[dict]:
        from fnsft.data.files import load_rows
        from fnsft.data.prompts import detect_prompt_column, to_prompt_row

        c = self.config
        path = path or c.dataset_name_or_path
        rows = load_rows(path).to_list()
        column = detect_prompt_column(rows[:20], path, c.column_mapping or None)
        out = [to_prompt_row(r, column, c.column_mapping or None, index=i, source=path) for i, r in enumerate(rows)]
        if not out:
            raise ConfigError(f"{self.key}.{key}: no prompts in {path}")
        return out

    def prompt_splits(self) -> dict[str, list[dict]]:
        """Training prompts and, with ``eval_dataset_path`` or ``eval_split``, held-out ones."""
        c = self.config
        eval_rows = self.load_prompts(c.eval_dataset_path, "eval_dataset_path") if c.eval_dataset_path else None
        return self.split_eval(self.load_prompts(), eval_rows)

    def execute(self, model, tokenizer, previous_result: Optional[StageResult] = None) -> StageResult:
        import sys

        import ray

        from fnsft.actors.roles import launch_roles
        from fnsft.distributed.deepspeed_config import build_deepspeed_config, describe_deepspeed
        from fnsft.distributed.handoff import get_handoff_store
        from fnsft.distributed.ray_runtime import cluster_has_gpus
        from fnsft.distributed.rl_worker import rl_train_worker
        from fnsft.distributed.train_job import TrainJob
        from fnsft.models.loading import lora_config
        from fnsft.rl import get_algorithm

        c = self.config
        spec = get_algorithm(c.algorithm)
        specs = getattr(self, "reward_specs", None)
        specs = specs if specs is not None else self.parse_rewards()
        res, ds = self.resources()
        use_gpu = res.use_gpu if res.use_gpu is not None else cluster_has_gpus()
        res = self.place(res, use_gpu)  # workers + role actors fit, or one line saying why not
        splits = self.prompt_splits()
        rows = splits["train"]
        dtype = getattr(self.pipeline_config, "torch_dtype", "auto")
        ref_mode = self._reference_mode()
        log.info("[%s] %s on %d prompts; %d worker(s), %s, %s; reference: %s", self.stage_name, spec.name, len(rows),
                 res.num_workers, "GPU" if use_gpu else "CPU",
                 "plain torch (TRPO)" if spec.policy_update == "natural"
                 else "DeepSpeed " + describe_deepspeed(ds, res.num_workers), ref_mode or "none")
        gen = c.generation
        reward_kwargs = self.reward_role_kwargs(model, dtype)
        roles = launch_roles(
            model, name=self.stage_name, dtype=dtype, apply_chat_template=c.apply_chat_template,
            generation=RoleResources(gen.num_replicas, gen.num_cpus, gen.num_gpus),
            generation_kwargs={"lora": lora_config(c) if c.use_peft else None, "engine": gen.engine,
                               "chat_template": c.chat_template, "batch_size": gen.batch_size,
                               "vllm_kwargs": gen.vllm_kwargs},
            reward=RoleResources(c.reward.num_replicas, c.reward.num_cpus, c.reward.num_gpus), reward_specs=specs,
            reward_kwargs=reward_kwargs,
            reference=RoleResources(c.reference.num_replicas, c.reference.num_cpus, c.reference.num_gpus)
            if ref_mode == "actor" else None, wait=False)
        try:
            deepspeed = build_deepspeed_config(ds, use_gpu, res.num_workers) if spec.policy_update != "natural" else None
            job = TrainJob(
                stage_name=self.stage_name, stage_config=c, model=model,
                data={"prompts": ray.put(rows), "eval_prompts": ray.put(splits.get("eval", []))},
                builder="", deepspeed=deepspeed, use_gpu=use_gpu, torch_dtype=dtype, store=get_handoff_store(),
                extra={"tty": sys.stdout.isatty(), "roles": roles})
            out = self.run_job(job, rl_train_worker, res, ds)
            self.after_train_job(roles, out)
        finally:
            roles.shutdown()
        path = out.get("path")
        handle = model.with_weights(out["weights"][0], path=path, stage=self.stage_name,
                                    adapter=out.get("adapter_path"))
        if path:
            handle.source = path
        timings = {**out["timings"], "roles_startup_s": round(roles.startup_s, 2)}
        metrics = {"prompts": len(rows), "eval_prompts": len(splits.get("eval", [])), **out["metrics"]}
        result = StageResult(model=handle, tokenizer=tokenizer, metrics=metrics, artifacts=out.get("artifacts", {}),
                             model_path=path, timings=timings)
        return self.finish(result, model, splits)

    def role_bundles(self) -> list[dict[str, float]]:
        """One bundle per role actor: generation replicas, the reward actor, the reference actor."""
        c = self.config
        roles = [(c.generation.num_replicas, c.generation.num_cpus, c.generation.num_gpus),
                 (c.reward.num_replicas, c.reward.num_cpus, c.reward.num_gpus)]
        if self._reference_mode() == "actor":
            roles.append((c.reference.num_replicas, c.reference.num_cpus, c.reference.num_gpus))
        out = []
        for replicas, cpus, gpus in roles:
            bundle = {**({"CPU": float(cpus)} if cpus > 0 else {}), **({"GPU": float(gpus)} if gpus > 0 else {})}
            out += [dict(bundle) for _ in range(replicas)] if bundle else []
        return out

    def _reference_mode(self) -> Optional[str]:
        c = self.config
        if not c.needs_reference:
            return None
        mode = c.reference.mode
        if mode == "auto":
            mode = "policy" if c.use_peft else "actor"
        return mode
