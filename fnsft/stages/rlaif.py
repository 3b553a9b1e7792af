"""Reinforcement learning from AI feedback: an AI judge is the reward of the RL loop (one Train job).

YAML (``stages: [rlaif]``, ``stage_configs.rlaif``) — every ``rl`` key, plus::

    dataset_name_or_path: examples/rlaif/prompts.jsonl
    algorithm: ppo                # ppo (default, as in the guide) | a2c | trpo | grpo | rloo
    mode: reward                  # the judge's score is the reward | preference | reward_model
    judge:                        # see fnsft.judges.settings (local | api | function)
      type: local
      kind: pointwise
      score_range: [1, 9]
    judge_weight: 1.0             # the judge's score (in [0, 1]) times this, plus any rule rewards
    rewards: []                   # optional rule terms summed with the judge (as in rl)
    eval_split: 0.1               # held-out prompts: judged greedy score before/after, and the win rate
    win_rate: true                # trained policy vs the stage's input policy, judged pairwise

``mode: reward_model`` first trains a reward model on judge-labelled pairs
(:mod:`fnsft.stages.rlaif_reward_model`, YAML ``reward_model:``), then runs the loop against it.

Every judgement is cached in ``<stage dir>/judge_cache.jsonl`` (a rerun pays nothing twice);
``judge.max_judge_calls`` caps the spend. Masked judgements (unparseable, failed) leave the
update instead of counting as 0; more than ``judge.max_masked_share`` of them (a judge outage)
fails the stage in one line. See docs/rlaif.md.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field, replace
from typing import Any, Optional

from fnsft.errors import ConfigError
from fnsft.judges.settings import JudgeSettings
from fnsft.stages.base import StageContext, StageResult
from fnsft.stages.rl import RLConfig, RLStage, StageRewards
from fnsft.stages.rlaif_reward_model import RewardModelSettings

log = logging.getLogger("fnsft")

MODES = ("reward", "preference", "reward_model")


@dataclass(kw_only=True)
class RLAIFConfig(RLConfig):
    algorithm: str = field(default="ppo", metadata={"help": "ppo | a2c | trpo | grpo | rloo (mode: reward); "
                                                            "mode preference: online_dpo (the default becomes it)."})
    mode: str = field(default="reward", metadata={"help": "reward: the judge's score is the RL reward; preference: "
                                                          "online DPO on the judge's best/worst completion per prompt; "
                                                          "reward_model: judge-labelled pairs train a reward model "
                                                          "(TRL RewardTrainer), then the RL loop runs against it."})
    reward_model: RewardModelSettings = field(
        default_factory=RewardModelSettings, metadata={"help": "mode reward_model: its data and training "
                                                               "(fnsft.stages.rlaif_reward_model)."})
    judge: JudgeSettings = field(default_factory=JudgeSettings, metadata={"help": "The AI judge (fnsft.judges)."})
    judge_weight: float = field(default=1.0, metadata={"help": "Weight of the judge's [0, 1] score in the reward."})
    max_judge_calls: int = field(default=0, metadata={"help": "Cap on judge calls for the stage (0: judge.max_judge_calls)."})
    win_rate: bool = field(default=True, metadata={"help": "After training, the trained policy's win rate over the "
                                                           "input policy on the held-out prompts (greedy answers)."})
    win_rate_max_new_tokens: Optional[int] = field(
        default=None, metadata={"help": "Answer length for the win rate (default eval_max_new_tokens, max_new_tokens)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        # mode preference trains with the online DPO loss: the untouched default (ppo) is resolved
        # here, where the config is made, so a config reads the same validated or not, and
        # validation only checks it.
        if self.mode == "preference" and self.algorithm == "ppo":
            self.algorithm = "online_dpo"

    def rollout_chunks(self) -> int:
        """``generation.score_chunks`` 0 means 2 here: the judge scores half a batch while the rest generates."""
        return self.generation.score_chunks or 2


@dataclass
class JudgedRewards(StageRewards):
    """The loop's rewards and what the stage's end needs of them: the ``judge`` (the win rate,
    mode reward_model's judged held-out score) and, mode reward_model, the reward model's
    ``metrics`` and ``artifacts``."""

    judge: Any = None
    run_id: Optional[str] = None  # the pipeline run (a rebuilt judge keeps its per-run actors' names)
    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)


class RLAIFStage(RLStage):
    """RL from AI feedback: a judge (local actors, an API or a function) scores the RL loop's completions."""

    config_class = RLAIFConfig

    @property
    def stage_name(self) -> str:
        return "rlaif"

    # Validation (no Ray) ------------------------------------------------------------------
    def parse_rewards(self) -> list:
        return super().parse_rewards() if self.config.rewards else []

    def judge_settings(self) -> JudgeSettings:
        c = self.config
        return replace(c.judge, max_judge_calls=c.max_judge_calls) if c.max_judge_calls else c.judge

    def validate_config(self) -> None:
        from fnsft.judges.settings import check_judge_settings

        c, key = self.config, self.key
        if c.mode not in MODES:
            raise ConfigError(f"{key}.mode: unknown mode {c.mode!r} (accepted: {', '.join(MODES)})")
        from fnsft.stages.rlaif_reward_model import check_reward_model_settings

        check_reward_model_settings(c, key)
        if c.mode == "preference":
            if c.algorithm != "online_dpo":  # the default was resolved to it (RLAIFConfig.__post_init__)
                raise ConfigError(f"{key}.algorithm: mode preference trains with online_dpo (got {c.algorithm!r}); "
                                  "leave algorithm out or use mode: reward")
            if c.num_generations < 2:
                raise ConfigError(f"{key}.num_generations: mode preference ranks completions of one prompt; use >= 2")
        check_judge_settings(c.judge, f"{key}.judge", getattr(self.pipeline_config, "config_dir", None) or ".")
        if c.judge.kind == "pairwise" and c.mode != "reward_model":
            raise ConfigError(f"{key}.judge.kind: mode {c.mode} ranks completions by a score each (pointwise or "
                              "binary); pairwise judges label mode reward_model's pairs and measure the win rate")
        if c.max_judge_calls < 0:
            raise ConfigError(f"{key}.max_judge_calls: must be >= 0 (0: no cap; got {c.max_judge_calls})")
        super().validate_config()
        own = "reward_model" if c.mode == "reward_model" else "judge"  # the stage's own term's name
        if own in [spec.label for spec in self.parse_rewards()]:
            raise ConfigError(f"{key}.rewards: a term is named {own!r}, the name of the stage's {own.replace('_', ' ')} "
                              "term; give it another name")

    def describe_plan(self) -> dict[str, Any]:
        plan = super().describe_plan()
        j = self.config.judge
        who = {"function": j.function, "local": j.model_name_or_path or "the stage's input model",
               "api": f"{j.api.get('model')} at {j.api.get('base_url') or '$OPENAI_BASE_URL'}"}[j.type]
        plan["judge"] = (f"{j.type} {j.kind} ({who}), template {j.template or 'helpfulness'}, "
                         f"weight {self.config.judge_weight:g}, cache judge_cache.jsonl")
        plan["rewards"] = plan["rewards"] or "the judge only"
        if self.config.mode == "reward_model":
            from fnsft.stages.rlaif_reward_model import describe_reward_model

            plan["reward_model"] = describe_reward_model(self.config)
            plan["rewards"] = "the trained reward model" + (f" + {plan['rewards']}" if self.config.rewards else "")
        return plan

    # Running ----------------------------------------------------------------------------
    def execute(self, model, tokenizer, previous_result: Optional[StageResult] = None, *,
                context: Optional[StageContext] = None) -> StageResult:
        from fnsft.errors import BudgetExhausted, StageError

        run_id = context.run_id if context is not None else None
        judge = self._build_judge(model, run_id)
        try:
            if self.config.mode == "reward_model":
                rewards = self._reward_model_rewards(model, judge, context)
            else:
                rewards = self._judge_rewards(judge, run_id)
            result = self.run_loop(model, tokenizer, rewards, context)
            self._check_masked_share(result.metrics)
            return result
        except StageError as e:
            # The reward actor's JudgeBudgetExhausted or masked-share stop arrives wrapped by Ray
            # Train: say it in one line.
            text = str(e)
            for name, error in (("max_judge_calls", BudgetExhausted), ("max_masked_share", StageError)):
                at = text.find(f"{self.key}.judge.{name}")
                if at >= 0:
                    raise error(text[at:].splitlines()[0]) from None
            raise
        finally:
            judge.close()

    def _check_masked_share(self, metrics: dict) -> None:
        """The whole loop's masked share (the judge's books summed over every reward actor) against
        ``judge.max_masked_share``; each scoring batch was held to it already (``JudgeTerm.score``)."""
        from fnsft.judges.outage import check_masked_share

        if self.config.mode == "reward_model" or not metrics.get("judge_judgements"):
            return
        n = metrics["judge_judgements"]
        counters = {k[len("judge_"):]: v for k, v in metrics.items() if k.startswith("judge_errors_")}
        counters.update(judgements=n, masked=round(metrics.get("judge_masked_share", 0.0) * n))
        check_masked_share(counters, self.config.judge.max_masked_share, f"{self.key}.judge", "over the stage")

    def _build_judge(self, model, run_id: Optional[str], books=None):
        from fnsft.judges import build_judge

        return build_judge(self.judge_settings(), model=model, name=self.stage_name,
                           dtype=getattr(self.pipeline_config, "torch_dtype", "auto"),
                           cache_path=os.path.join(self.config.output_dir, "judge_cache.jsonl"), key=f"{self.key}.judge",
                           books=books, run_id=run_id)

    def _judge_rewards(self, judge, run_id: Optional[str] = None) -> JudgedRewards:
        """modes reward and preference: the judge is a reward term (after any rule terms)."""
        from fnsft.judges.reward_term import JudgeTerm

        c = self.config
        rewards = JudgedRewards(self.parse_rewards(), [JudgeTerm(judge, c.judge_weight)], judge=judge, run_id=run_id)
        if c.mode == "preference":
            os.makedirs(c.output_dir, exist_ok=True)
            rewards.pairs_path = os.path.join(c.output_dir, "preference_pairs.jsonl")
            rewards.pairs_group = c.num_generations
            open(rewards.pairs_path, "w").close()  # this run's pairs only (the judgements stay cached)
        return rewards

    def _reward_model_rewards(self, model, judge, context: Optional[StageContext] = None) -> JudgedRewards:
        """mode reward_model: judge-labelled pairs -> a reward model; the loop's reward is that model
        (the judge stays on the driver; a local judge's pool is stopped: the loop needs the CPUs)."""
        from fnsft.stages.rlaif_reward_model import build_reward_model

        os.makedirs(self.config.output_dir, exist_ok=True)
        spec, metrics, artifacts = build_reward_model(self, model, judge, self.prompt_splits(), context)
        from fnsft.judges.outage import check_masked_share

        check_masked_share(judge.counters(), judge.settings.max_masked_share, judge.key, "labelling the pairs")
        return JudgedRewards(self.parse_rewards() + [spec], judge=judge, metrics=metrics, artifacts=artifacts,
                             run_id=context.run_id if context is not None else None)

    def finish(self, result: StageResult, model, splits: dict, rewards: JudgedRewards) -> StageResult:
        if self.config.mode == "reward_model":
            return self._finish_reward_model(result, model, splits, rewards)
        pairs = rewards.pairs_path
        if pairs and os.path.isfile(pairs):
            result.artifacts["preference_pairs"] = pairs  # preference_dataset_path of a later dpo stage
            with open(pairs, encoding="utf-8") as f:
                result.metrics["preference_pairs"] = sum(1 for _ in f)
        eval_rows = splits.get("eval") or []
        if self.config.win_rate and eval_rows:
            result.metrics.update(self._win_rate(rewards.judge, model, result, eval_rows))
        return result

    def _finish_reward_model(self, result: StageResult, model, splits: dict, rewards: JudgedRewards) -> StageResult:
        """The reward model's metrics, the held-out judged score before/after (the loop's greedy
        answers, judged pointwise) and the win rate; the judge's books cover labelling too."""
        from fnsft.judges.base import summarize
        from fnsft.utils.console import say

        result.metrics.update(rewards.metrics)
        result.artifacts.update(rewards.artifacts)
        result.metrics["preference_pairs"] = rewards.metrics["reward_model_pairs"]
        judge = rewards.judge
        if judge.settings.type == "local":
            # Its pool was stopped after labelling: a fresh one judges the policy, on the same
            # budget and books as the labelling.
            judge = self._build_judge(model, rewards.run_id, books=rewards.judge.books)
        try:
            rows = splits.get("eval") or []
            old, new = self._answers_from_eval(result, None, len(rows))
            if rows and old is not None and judge.kind != "pairwise":
                prompts = [r["prompt"] for r in rows]
                for name, answers in (("start", old), ("end", new)):
                    known = [v for v in judge.pointwise(prompts, answers) if v is not None]
                    result.metrics[f"eval_judge_{name}"] = sum(known) / len(known) if known else float("nan")
                say(f"[{self.stage_name}] held-out judged score (greedy): {result.metrics['eval_judge_start']:.3f} -> "
                    f"{result.metrics['eval_judge_end']:.3f} ({len(rows)} prompts)")
            if self.config.win_rate and rows:
                result.metrics.update(self._win_rate(judge, model, result, rows))
        finally:
            judge.close()
        result.metrics.update({k.replace("/", "_"): v for k, v in summarize(judge.counters()).items()})
        return result

    def _win_rate(self, judge, model, result: StageResult, rows: list[dict]) -> dict[str, Any]:
        """Greedy answers of the input and the trained policy to the held-out prompts, judged."""
        import time

        from fnsft.utils.console import say
        from fnsft.judges.winrate import win_rate

        c = self.config
        t0 = time.perf_counter()
        prompts = [r["prompt"] for r in rows]
        sampling = {"max_new_tokens": c.win_rate_max_new_tokens or c.eval_max_new_tokens or c.max_new_tokens,
                    "temperature": 0.0}
        old, new = self._answers_from_eval(result, c.win_rate_max_new_tokens, len(prompts))
        if old is None:
            old, new = self._greedy_answers(model, result.model, prompts, sampling)
        wr = win_rate(judge, prompts, new, old)
        path = os.path.join(c.output_dir, "win_rate_samples.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            for p, a, b, pref in zip(prompts, new, old, wr["preferences"]):
                f.write(json.dumps({"prompt": p, "trained": a, "input": b, "p_trained_better": pref}) + "\n")
        result.artifacts["win_rate_samples"] = path
        seconds = time.perf_counter() - t0
        say(f"[{self.stage_name}] win rate of the trained policy over its input: {wr['win_rate']:.3f} "
            f"(ties {wr['tie_rate']:.2f}, {int(wr['n'])} held-out prompts, {int(wr['masked'])} masked, "
            f"{wr['method']}, {seconds:.1f}s)")
        out = {f"win_rate{'' if k == 'win_rate' else '_' + k}": v for k, v in wr.items() if k != "preferences"}
        out["win_rate_s"] = seconds
        return out

    @staticmethod
    def _answers_from_eval(result: StageResult, own_length: Optional[int], n: int):
        """The loop's own greedy held-out answers before (iteration 0) and after training, when it has them."""
        path = result.artifacts.get("rl_eval_answers")
        if own_length or not path or not os.path.isfile(path):
            return None, None
        with open(path) as f:
            answers = {int(k): v for k, v in json.load(f).items()}
        last = max(answers, default=0)
        if 0 not in answers or last == 0 or len(answers[0]) != n or len(answers[last]) != n:
            return None, None  # resumed mid-stage or no evaluation before training: generate afresh
        return answers[0], answers[last]

    def _greedy_answers(self, model_in, model_out, prompts: list, sampling: dict) -> tuple[list[str], list[str]]:
        """One generation actor: the input policy answers, then the trained weights are loaded into it."""
        from fnsft.actors.generation import GenerationActor
        from fnsft.actors.group import ActorGroup, RoleResources

        c = self.config
        dtype = getattr(self.pipeline_config, "torch_dtype", "auto")
        res = RoleResources(1, c.generation.num_cpus, c.generation.num_gpus)
        kwargs = {"dtype": dtype, "apply_chat_template": c.apply_chat_template, "chat_template": c.chat_template,
                  "engine": "hf", "batch_size": c.generation.batch_size}
        group = ActorGroup(GenerationActor, res, args=(model_in,), kwargs=kwargs, name=f"{self.stage_name}-winrate")
        try:
            call = lambda actor, chunk: actor.generate.remote(chunk, sampling, 0)  # noqa: E731
            old = group.split(prompts, call)["texts"]
            if model_out.weights is not None:
                group.all(lambda actor: actor.load_weights.remote(model_out.weights))
            else:
                group.kill()
                group = ActorGroup(GenerationActor, res, args=(model_out,), kwargs=kwargs,
                                   name=f"{self.stage_name}-winrate")
            new = group.split(prompts, call)["texts"]
        finally:
            group.kill()
        return old, new
