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
update instead of counting as 0. See docs/rlaif.md.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field, replace
from typing import Any, Optional

from fnsft.errors import ConfigError
from fnsft.judges.settings import JudgeSettings
from fnsft.stages.base import StageResult
from fnsft.stages.rl import RLConfig, RLStage
from fnsft.stages.rlaif_reward_model import RewardModelSettings

log = logging.getLogger("fnsft")

MODES = ("reward", "preference", "reward_model")


@dataclass(kw_only=True)
class RLAIFConfig(RLConfig):
    algorithm: str = field(default="ppo", metadata={"help": "ppo | a2c | trpo | grpo | rloo (mode: reward)."})
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


    def rollout_chunks(self) -> int:
        """``generation.score_chunks`` 0 means 2 here: the judge scores half a batch while the rest generates."""
        return self.generation.score_chunks or 2


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
            if c.algorithm not in ("ppo", "online_dpo"):  # ppo: the untouched default
                raise ConfigError(f"{key}.algorithm: mode preference trains with online_dpo (got {c.algorithm!r}); "
                                  "leave algorithm out or use mode: reward")
            c.algorithm = "online_dpo"
            if c.num_generations < 2:
                raise ConfigError(f"{key}.num_generations: mode preference ranks completions of one prompt; use >= 2")
        check_judge_settings(c.judge, f"{key}.judge", getattr(self.pipeline_config, "config_dir", None) or ".")
        if c.judge.kind == "pairwise" and c.mode != "reward_model":
            raise ConfigError(f"{key}.judge.kind: mode {c.mode} ranks completions by a score each (pointwise or "
                              "binary); pairwise judges label mode reward_model's pairs and measure the win rate")
        if c.max_judge_calls < 0:
            raise ConfigError(f"{key}.max_judge_calls: must be >= 0 (0: no cap; got {c.max_judge_calls})")
        super().validate_config()

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
    def execute(self, model, tokenizer, previous_result: Optional[StageResult] = None) -> StageResult:
        from fnsft.errors import BudgetExhausted, StageError

        self.judge = None
        try:
            if self.config.mode == "reward_model":
                self._train_reward_model(model)
            return super().execute(model, tokenizer, previous_result)
        except StageError as e:
            # The reward actor's JudgeBudgetExhausted arrives wrapped by Ray Train: say it in one line.
            text = str(e)
            at = text.find(f"{self.key}.judge.max_judge_calls")
            if at < 0:
                raise
            raise BudgetExhausted(text[at:].splitlines()[0]) from None
        finally:
            self._stop_judge()

    def _build_judge(self, model):
        from fnsft.judges import build_judge

        return build_judge(self.judge_settings(), model=model, name=self.stage_name,
                           dtype=getattr(self.pipeline_config, "torch_dtype", "auto"),
                           cache_path=os.path.join(self.config.output_dir, "judge_cache.jsonl"), key=f"{self.key}.judge")

    def _train_reward_model(self, model) -> None:
        """mode reward_model: judge-labelled pairs -> a reward model; the loop's reward is that model."""
        from fnsft.stages.rlaif_reward_model import build_reward_model

        os.makedirs(self.config.output_dir, exist_ok=True)
        self.judge = self._build_judge(model)
        spec, self.rm_metrics, self.rm_artifacts = build_reward_model(self, model, self.prompt_splits())
        self.label_judge = self.judge
        if getattr(self.judge.backend, "pool", None) is not None:
            self.judge = None  # a local judge's pool was stopped (the loop needs the CPUs): rebuilt to evaluate
        self.reward_specs = self.parse_rewards() + [spec]

    def reward_role_kwargs(self, model, dtype: str) -> dict:
        c = self.config
        if c.mode == "reward_model":
            return {}  # the reward model is a reward term; the judge stays on the driver
        self.judge = self._build_judge(model)
        kwargs = {"judge": self.judge, "judge_weight": c.judge_weight}
        if c.mode == "preference":
            os.makedirs(c.output_dir, exist_ok=True)
            self.pairs_path = os.path.join(c.output_dir, "preference_pairs.jsonl")
            open(self.pairs_path, "w").close()  # this run's pairs only (the judgements stay cached)
            kwargs.update(pairs_path=self.pairs_path, pairs_group=c.num_generations)
        return kwargs

    def after_train_job(self, roles, out: dict) -> None:
        import ray

        self.judge_totals = ray.get(roles.reward.actors[0].judge_stats.remote()) if roles.reward else {}

    def finish(self, result: StageResult, model, splits: dict) -> StageResult:
        if self.config.mode == "reward_model":
            return self._finish_reward_model(result, model, splits)
        totals = getattr(self, "judge_totals", {})
        result.metrics.update({k.replace("/", "_"): v for k, v in totals.items()})
        pairs = getattr(self, "pairs_path", None)
        if pairs and os.path.isfile(pairs):
            result.artifacts["preference_pairs"] = pairs  # preference_dataset_path of a later dpo stage
            with open(pairs, encoding="utf-8") as f:
                result.metrics["preference_pairs"] = sum(1 for _ in f)
        eval_rows = splits.get("eval") or []
        if self.config.win_rate and eval_rows:
            result.metrics.update(self._win_rate(model, result, eval_rows))
        return result

    def _finish_reward_model(self, result: StageResult, model, splits: dict) -> StageResult:
        """The reward model's metrics, the held-out judged score before/after (the loop's greedy
        answers, judged pointwise) and the win rate; the judge's books cover labelling too."""
        from fnsft.judges.base import summarize
        from fnsft.utils.console import say

        result.metrics.update(self.rm_metrics)
        result.artifacts.update(self.rm_artifacts)
        result.metrics["preference_pairs"] = self.rm_metrics["reward_model_pairs"]
        if self.judge is None:  # a local judge's pool was stopped after labelling: a fresh one judges the policy
            self.judge = self._build_judge(model)
            self.judge._counters = self.label_judge._counters  # one budget and one set of books for the stage
        rows = splits.get("eval") or []
        old, new = self._answers_from_eval(result, None, len(rows))
        if rows and old is not None and self.judge.kind != "pairwise":
            prompts = [r["prompt"] for r in rows]
            for name, answers in (("start", old), ("end", new)):
                known = [v for v in self.judge.pointwise(prompts, answers) if v is not None]
                result.metrics[f"eval_judge_{name}"] = sum(known) / len(known) if known else float("nan")
            say(f"[{self.stage_name}] held-out judged score (greedy): {result.metrics['eval_judge_start']:.3f} -> "
                f"{result.metrics['eval_judge_end']:.3f} ({len(rows)} prompts)")
        if self.config.win_rate and rows:
            result.metrics.update(self._win_rate(model, result, rows))
        result.metrics.update({k.replace("/", "_"): v for k, v in summarize(self.judge.counters()).items()})
        return result

    def _stop_judge(self) -> None:
        pool = getattr(getattr(self.judge, "backend", None), "pool", None)
        if pool is not None:
            pool.kill()

    def _win_rate(self, model, result: StageResult, rows: list[dict]) -> dict[str, Any]:
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
        wr = win_rate(self.judge, prompts, new, old)
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
