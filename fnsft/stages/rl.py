"""Reinforcement learning from rewards: PPO, A2C, TRPO, GRPO, RLOO and the GRPO family on Ray (one Train job).

YAML (``stage_configs.rl``)::

    dataset_name_or_path: examples/arithmetic/train.jsonl   # prompt-only rows; extra columns
    algorithm: grpo               # ppo | a2c | trpo | grpo | rloo | dapo | ...  # columns reach the rewards
    num_iterations: 30            # generate -> score -> update -> push weights
    prompts_per_iteration: 8
    num_generations: 4            # completions per prompt (the group for grpo/rloo)
    max_new_tokens: 16
    learning_rate: 1e-5
    kl_coef: 0.05                 # add kl_target: 6.0 for an adaptive coefficient
    rewards:
      - {type: exact_match, column: answer, extract: last_number}
      - {type: regex, pattern: '^\\s*-?\\d+\\s*$', weight: 0.2}
    generation: {num_replicas: 1, num_cpus: 1}   # engine: hf | vllm | auto
The driver starts the role actors (:mod:`fnsft.actors`: generation replicas, a reward actor,
a reference actor unless the LoRA policy without adapters serves), then runs one Train job
(:func:`fnsft.workers.rl.worker.rl_train_worker`) that drives the loop. See docs/rl.md.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from fnsft.actors.group import RoleResources
from fnsft.envs.settings import EnvironmentSettings
from fnsft.errors import ConfigError
from fnsft.rl.algorithms import ALGORITHMS
from fnsft.stages.base import StageContext, StageResult
from fnsft.stages.rl_settings import (AsyncRolloutSettings, BehaviorCorrectionSettings, GenerationSettings,
                                      GRPOFamilyKeys, ReferenceSettings, generation_engine, validate_async)
from fnsft.stages.rl_reference import reference_mode, reference_model, validate_reference
from fnsft.stages.training import TrainStage, TrainStageConfig

log = logging.getLogger("fnsft")


@dataclass
class StageRewards:
    """The reward of an RL-style stage: what every reward actor gets, passed from the stage's
    start to its end (:meth:`RLStage.run_loop`, :meth:`RLStage.finish`).

    ``specs`` (``rl.rewards`` entries) are built into terms inside each reward actor (a reward model
    loads there); ``terms`` are ready terms sent to every actor (RLAIF's judge,
    :mod:`fnsft.rl.reward_terms`). ``pairs_path``/``pairs_group``: the actors append each training
    batch's (chosen, rejected) pairs there (RLAIF ``mode: preference``).
    """

    specs: list
    terms: list = field(default_factory=list)
    pairs_path: Optional[str] = None
    pairs_group: int = 0


@dataclass(kw_only=True)
class RLConfig(GRPOFamilyKeys, TrainStageConfig):
    dataset_name_or_path: str = field(
        metadata={"help": "Prompts: .jsonl/.json/.csv/.parquet with a prompt/question/problem/messages column; "
                          "other columns are passed to reward functions."})
    column_mapping: dict[str, str] = field(default_factory=dict, metadata={"help": "Rename columns first."})
    algorithm: str = field(default="grpo", metadata={"help": "ppo | a2c | trpo | grpo | rloo | online_dpo | dapo | "
                                                             "dr_grpo | gspo | cispo | reinforce_pp | reinforce_pp_baseline | "
                                                             "on_policy_distill."})
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
    environment: EnvironmentSettings = field(
        default_factory=EnvironmentSettings, metadata={"help": "Multi-turn episodes against an environment, with "
                                                               "tools (docs/environments.md); off by default."})
    async_rollout: AsyncRolloutSettings = field(
        default_factory=AsyncRolloutSettings, metadata={"help": "Asynchronous rollouts with a staleness bound."})
    behavior_correction: BehaviorCorrectionSettings = field(
        default_factory=BehaviorCorrectionSettings,
        metadata={"help": "Importance correction between the learner's old policy and the sampling policy."})
    role_timeout_s: float = field(default=1800.0, metadata={"help": "Most seconds one wait on the role actors may take "
                                  "(a batch's generation, its scores, reference log-probs, weight acks): past it, the stage stops."})
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
        if self.kl_in_reward is not None:
            return self.kl_in_reward
        spec = ALGORITHMS.get(self.algorithm.lower())  # grpo and its family: in the loss
        return not (spec is not None and spec.kl_in_loss)

    @property
    def needs_reference(self) -> bool:
        spec = ALGORITHMS.get(self.algorithm.lower())  # online DPO and distillation: the loss is relative to it
        if spec is not None and (spec.policy_update == "dpo" or spec.advantage == "teacher"):
            return True
        return self.reference.mode != "none" and (self.kl_coef > 0 or bool(self.kl_target))

    @property
    def behavior_logprobs(self) -> bool:
        """Whether rollouts carry the sampler's log-probs (async rollouts; vLLM, whose numbers may
        differ from the learner's: ``rollout/logprob_diff_mean/max``)."""
        return self.async_rollout.enabled or self.generation.engine == "vllm"

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
        from fnsft.runtime.deepspeed_config import deepspeed_in_use
        from fnsft.rl import get_algorithm

        super().validate_config()
        c, key = self.config, self.key
        try:
            spec = get_algorithm(c.algorithm)
        except ConfigError as e:
            raise ConfigError(f"{key}.algorithm: {e}".replace("unknown rl.algorithm", "unknown algorithm")) from None
        self.parse_rewards()  # every term checked now (functions imported); built again to run
        from fnsft.rl.knobs import resolve_knobs

        resolve_knobs(c, key)  # the GRPO family's knobs: contradictions and misplaced keys, one line
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
        validate_async(c, key, spec)  # rl.async_rollout, rl.behavior_correction
        validate_reference(c, key, spec)  # rl.reference.model_name_or_path, on_policy_distill's teacher
        if c.load_in_4bit or c.load_in_8bit:
            raise ConfigError(f"{key}.load_in_4bit/load_in_8bit: quantized policies are not supported by the RL stage yet")
        from fnsft.envs.checks import check_environment

        check_environment(c.environment, f"{key}.environment")
        self._check_prompts(c.dataset_name_or_path, f"{key}.dataset_name_or_path")
        if c.eval_dataset_path:
            self._check_prompts(c.eval_dataset_path, f"{key}.eval_dataset_path")
        if c.eval_max_new_tokens is not None and c.eval_max_new_tokens < 1:
            raise ConfigError(f"{key}.eval_max_new_tokens: must be >= 1 (got {c.eval_max_new_tokens})")
        generation_engine(c, key, getattr(self.pipeline_config, "model_name_or_path", ""))  # last: may import torch

    def parse_rewards(self) -> list:
        """The checked ``rewards`` terms (RLAIF allows none: its judge is the reward; nor does an
        environment class: its step rewards are the reward; nor on-policy distillation: the teacher
        is its signal, rewards there are only measured)."""
        from fnsft.rl.rewards import parse_reward_specs

        c = self.config
        spec = ALGORITHMS.get(c.algorithm.lower())
        if not c.rewards and (c.environment.class_ or (spec is not None and spec.advantage == "teacher")):
            return []
        return parse_reward_specs(c.rewards, f"{self.key}.rewards")

    # Hooks for stages built on this one (RLAIF) ------------------------------------------
    def finish(self, result: StageResult, model, splits: dict, rewards: StageRewards) -> StageResult:
        """Last words on the result (RLAIF: the win rate), given the rewards the loop ran with."""
        return result

    def _check_prompts(self, path: str, key: str) -> None:
        """``path``'s first rows have a prompt column and every column an ``exact_match`` reward
        reads (else the first scoring batch, minutes into the stage, would be the first to say so)."""
        from fnsft.data.prompts import check_prompt_file

        needs = {f"{self.key}.rewards[{i}].column": spec.column
                 for i, spec in enumerate(self.parse_rewards()) if spec.type == "exact_match"}
        check_prompt_file(path, key, self.config.column_mapping or None, needs)

    def describe_plan(self) -> dict[str, Any]:
        from fnsft.rl.knobs import describe_knobs, resolve_knobs

        c = self.config
        spec = ALGORITHMS.get(c.algorithm.lower())
        terms = ", ".join(f"{r.get('type')}x{r.get('weight', 1.0):g}" for r in c.rewards)
        engine = generation_engine(c, self.key, getattr(self.pipeline_config, "model_name_or_path", ""))
        return {
            "data": f"{c.dataset_name_or_path} (prompts)",
            "algorithm": f"{c.algorithm}: {c.max_steps if c.max_steps > 0 else c.num_iterations} iterations x "
                         f"{c.prompts_per_iteration} prompts x {c.num_generations} generations, "
                         f"max_new_tokens={c.max_new_tokens}, lr={c.learning_rate:g}",
            "rewards": terms,
            **({"loss": describe_knobs(resolve_knobs(c, self.key), spec.loss)} if spec is not None and spec.loss else {}),
            "kl": f"coef {c.kl_coef:g}" + (f" adaptive to {c.kl_target:g}" if c.kl_target else " fixed")
                  + (" in the reward" if c.kl_in_reward_resolved else " in the loss"),
            "roles": f"generation x{c.generation.num_replicas} ({engine.describe()}), reward, "
                     f"reference {c.reference.mode}",
            "weights": f"LoRA r={c.lora_r}" if c.use_peft else "full fine-tune",
            "eval": self._describe_eval(),
            **({"environment": c.environment.describe()} if c.environment.enabled else {}),
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
        from fnsft.data.prompts import detect_prompt_column, to_prompt_row
        from fnsft.data.rows import first_rows, read_rows

        c = self.config
        path = path or c.dataset_name_or_path
        mapping = c.column_mapping or None
        column = detect_prompt_column(first_rows(path, 20), path, mapping)
        # A bad row (broken JSON, a wrong type) stops with its file and line, or is skipped (skip_bad_rows).
        out, report = read_rows(path, lambda row, where: to_prompt_row(row, column, mapping, source=where),
                                skip_bad_rows=c.skip_bad_rows, key=self.key)
        if report.skipped:
            log.warning("[%s] %s: %s", self.stage_name, path, report.describe())
        if not out:
            raise ConfigError(f"{self.key}.{key}: no prompts in {path}")
        return out

    def prompt_splits(self) -> dict[str, list[dict]]:
        """Training prompts and, with ``eval_dataset_path`` or ``eval_split``, held-out ones."""
        c = self.config
        eval_rows = self.load_prompts(c.eval_dataset_path, "eval_dataset_path") if c.eval_dataset_path else None
        return self.split_eval(self.load_prompts(), eval_rows)

    def execute(self, model, tokenizer, previous_result: Optional[StageResult] = None, *,
                context: Optional[StageContext] = None) -> StageResult:
        return self.run_loop(model, tokenizer, StageRewards(self.parse_rewards()), context)

    def run_loop(self, model, tokenizer, rewards: StageRewards, context: Optional[StageContext] = None) -> StageResult:
        """Start the role actors (the reward actors with ``rewards``), run the loop's Train job, and
        return the result with the reward terms' books summed over every reward actor."""
        from fnsft.actors.roles import launch_roles
        from fnsft.actors.rollout import reward_term_metrics
        from fnsft.runtime.deepspeed_config import describe_deepspeed
        from fnsft.workers.rl.worker import rl_train_worker
        from fnsft.models.loading import lora_config
        from fnsft.rl import get_algorithm

        c = self.config
        spec = get_algorithm(c.algorithm)
        layout = self.layout()  # workers + role actors fit, or one line saying why not
        res, ds = layout.resources, layout.deepspeed
        splits = self.prompt_splits()
        rows = splits["train"]
        ref_mode = reference_mode(c)
        teacher = reference_model(c.reference.model_name_or_path if ref_mode == "actor" else None, tokenizer,
                                  self.pipeline_config, self.key)
        choice = generation_engine(c, self.key, model.source, layout.use_gpu)  # hf | vllm, and why
        log.info("[%s] %s on %d prompts; %d worker(s), %s, %s; reference: %s; generation: %s", self.stage_name,
                 spec.name, len(rows), res.num_workers, "GPU" if layout.use_gpu else "CPU",
                 "plain torch (TRPO)" if spec.policy_update == "natural"
                 else "DeepSpeed " + describe_deepspeed(ds, res.num_workers), ref_mode or "none", choice.describe())
        gen = c.generation
        c = dataclasses.replace(c, generation=dataclasses.replace(gen, engine=choice.engine))  # the workers' view
        roles = launch_roles(
            model, name=self.stage_name, dtype=getattr(self.pipeline_config, "torch_dtype", "auto"),
            apply_chat_template=c.apply_chat_template, generation_runtime_env=choice.runtime_env(int(gen.num_cpus)),
            generation=RoleResources(gen.num_replicas, gen.num_cpus, gen.num_gpus),
            generation_kwargs={"lora": lora_config(c) if c.use_peft else None, "engine": choice.engine,
                               "chat_template": c.chat_template, "batch_size": gen.batch_size,
                               "vllm_kwargs": gen.vllm_kwargs},
            reward=RoleResources(c.reward.num_replicas, c.reward.num_cpus, c.reward.num_gpus),
            reward_specs=rewards.specs, reward_terms=rewards.terms,
            reward_kwargs={"pairs_path": rewards.pairs_path, "pairs_group": rewards.pairs_group},
            reference=RoleResources(c.reference.num_replicas, c.reference.num_cpus, c.reference.num_gpus)
            if ref_mode == "actor" else None, reference_model=teacher, wait=False)
        try:
            if c.environment.enabled:  # one more role: the environment actors (fnsft.envs)
                from fnsft.envs.wrappers import launch

                roles.environment = launch(c.environment, f"{self.key}.environment", self.stage_name)
            out = self.launch(model, rl_train_worker, {"prompts": rows, "eval_prompts": splits.get("eval", [])},
                              context=context, layout=layout, roles=roles, stage_config=c,
                              use_deepspeed=spec.policy_update != "natural")  # TRPO: plain torch
            totals = reward_term_metrics(roles.reward)  # the judge's calls, masked share... (RLAIF)
        finally:
            roles.shutdown()
        path = out.get("path")
        handle = model.with_weights(out["weights"][0], path=path, stage=self.stage_name,
                                    adapter=out.get("adapter_path"))
        if path:
            handle.source = path
        timings = {**out["timings"], "roles_startup_s": round(roles.startup_s, 2)}
        metrics = {"prompts": len(rows), "eval_prompts": len(splits.get("eval", [])), "generation_engine": choice.engine,
                   **out["metrics"], **{k.replace("/", "_"): v for k, v in totals.items()}}
        result = StageResult(model=handle, tokenizer=tokenizer, metrics=metrics, artifacts=out.get("artifacts", {}),
                             model_path=path, timings=timings)
        return self.finish(result, model, splits, rewards)

    def role_bundles(self) -> list[dict[str, float]]:
        """One bundle per role actor: generation replicas, the reward actor, the reference actor."""
        c = self.config
        roles = [(c.generation.num_replicas, c.generation.num_cpus, c.generation.num_gpus),
                 (c.reward.num_replicas, c.reward.num_cpus, c.reward.num_gpus)]
        if reference_mode(c) == "actor":
            roles.append((c.reference.num_replicas, c.reference.num_cpus, c.reference.num_gpus))
        out = []
        for replicas, cpus, gpus in roles:
            bundle = {**({"CPU": float(cpus)} if cpus > 0 else {}), **({"GPU": float(gpus)} if gpus > 0 else {})}
            out += [dict(bundle) for _ in range(replicas)] if bundle else []
        return out
