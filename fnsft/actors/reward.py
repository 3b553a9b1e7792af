"""The reward role: score completions with a weighted sum of reward terms (YAML ``rl.rewards``).

Terms are built-in rules and user functions (:mod:`fnsft.rl.rewards`, TRL's signature) and
sequence-classification reward models loaded from a directory. RLAIF's judge is another term
of the same kind. The class is plain Python; ``ActorGroup`` makes it a Ray actor.
"""

from __future__ import annotations

import time
from typing import Any, Optional

from fnsft.actors.serving import ModelServer


class SequenceClassifierReward(ModelServer):
    """A reward model: the score is the first logit of ``AutoModelForSequenceClassification``.

    A :class:`~fnsft.actors.serving.ModelServer` whose model comes from a directory (``path``,
    YAML ``rl.rewards[].path``), in float32 as saved; called as a reward term inside
    :class:`RewardActor`.
    """

    def __init__(self, path: str, apply_chat_template: bool = True, batch_size: int = 16, replica: int = 0):
        from fnsft.models.loading import load_tokenizer

        self.tokenizer = load_tokenizer(path)
        super().__init__(path, batch_size=batch_size, replica=replica)
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.apply_chat_template = apply_chat_template and bool(getattr(self.tokenizer, "chat_template", None))

    def load_model(self, path: str):
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_pretrained(path)

    def encode(self, prompts: list, completions: list[str]) -> list[list[int]]:
        """Token ids of (prompt, completion) pairs exactly as this model scores them (unpadded);
        the reward model's training (:mod:`fnsft.distributed.reward_trainer`) tokenizes with it."""
        return encode_for_reward(self.tokenizer, prompts, completions, self.apply_chat_template)

    def __call__(self, prompts, completions, **_) -> list[float]:
        import torch

        from fnsft.actors.modeling import pad_sequences

        ids = self.encode(prompts, completions)
        scores: list[float] = []
        for rows in self.batches(len(ids)):
            padded, mask = pad_sequences(ids[rows], self.tokenizer.pad_token_id, "right")
            with torch.no_grad():
                logits = self.model(input_ids=torch.as_tensor(padded, device=self.device),
                                    attention_mask=torch.as_tensor(mask, device=self.device)).logits
            scores += logits[:, 0].float().tolist()
        return scores


def encode_for_reward(tokenizer, prompts: list, completions: list[str], apply_chat_template: bool) -> list[list[int]]:
    """(prompt, completion) as a reward model reads them: the chat template with the completion as
    the assistant turn (no extra special tokens), else the plain prompt text + completion with the
    tokenizer's own special tokens; cut to the tokenizer's ``model_max_length``."""
    from fnsft.actors.modeling import prompt_text

    if apply_chat_template:
        texts = [tokenizer.apply_chat_template(
            (p if isinstance(p, list) else [{"role": "user", "content": str(p)}])
            + [{"role": "assistant", "content": c}], tokenize=False) for p, c in zip(prompts, completions)]
    else:
        texts = [prompt_text(p) + c for p, c in zip(prompts, completions)]
    return tokenizer(texts, truncation=True, add_special_tokens=not apply_chat_template)["input_ids"]


class RewardActor:
    """Sum of weighted reward terms.

    Args:
        specs: :class:`fnsft.rl.rewards.RewardSpec` list (already validated).
        apply_chat_template: format (prompt, completion) with the reward model's chat template.
    """

    def __init__(self, specs: list, apply_chat_template: bool = True, replica: int = 0,
                 judge=None, judge_weight: float = 1.0, pairs_path: Optional[str] = None, pairs_group: int = 0):
        from fnsft.rl.rewards import rule_function

        self.replica = replica
        # RLAIF: a :class:`fnsft.judges.base.Judge` (pointwise/binary) scores every completion,
        # normalised to [0, 1]; a masked judgement takes its row out of the update.
        self.judge, self.judge_weight = judge, float(judge_weight)
        self._judge_seen = None
        # RLAIF mode preference: the pairs the loop's DPO step uses, also kept as a DPO dataset.
        self.pairs_path, self.pairs_group = pairs_path, pairs_group
        self.terms: list[tuple[str, float, Any, dict]] = []
        for spec in specs:
            if spec.type == "model":
                fn, fixed = SequenceClassifierReward(spec.path, apply_chat_template), {}
            else:
                fn, fixed = rule_function(spec)
            self.terms.append((spec.label, float(spec.weight), fn, fixed))
        self.completions_scored = 0

    def ready(self) -> bool:
        return True

    def num_scored(self) -> int:
        """Completions this replica has scored (each replica scores a share of every batch)."""
        return self.completions_scored

    def score(self, prompts: list, completions: list[str], columns: Optional[dict[str, list]] = None,
              completion_ids: Optional[list[list[int]]] = None) -> dict[str, Any]:
        """``{"rewards": [...], "components": {label: [...]}, "seconds": {label: s}}``.

        With a judge, also ``masked`` (rows whose judgement failed: they must leave the update,
        their reward is meaningless), ``metrics`` (the judge's books since the last call) and
        ``judge_counters`` (the same, raw: shares of one batch add up). ``span``: this call's
        ``[start, end]`` wall clock.

        ``columns``: the dataset's extra columns, one entry per completion (``answer``...).
        ``rewards`` is the weighted sum; ``components`` the unweighted terms (for metrics).
        """
        from fnsft.actors.modeling import prompt_text
        from fnsft.rl.rewards import call_reward, weighted_sum

        started = time.time()
        columns = dict(columns or {})
        if completion_ids is not None:
            columns["completion_ids"] = completion_ids
        components, seconds = {}, {}
        for label, _, fn, fixed in self.terms:
            t0 = time.perf_counter()
            # Rule functions see prompts as sent; reward models get the structured prompt too.
            ps = prompts if isinstance(fn, SequenceClassifierReward) else [
                p if isinstance(p, list) else prompt_text(p) for p in prompts]
            components[label] = call_reward(fn, ps, completions, columns, fixed, label)
            seconds[label] = time.perf_counter() - t0
        weights = {label: w for label, w, _, _ in self.terms}
        self.completions_scored += len(completions)
        out = {"rewards": weighted_sum(components, weights) if self.terms else [0.0] * len(completions),
               "components": components, "seconds": seconds}
        if self.judge is not None:
            self._judge_term(prompts, completions, out)
        if self.pairs_path and self.pairs_group > 1:
            self._write_pairs(prompts, completions, out)
        out["span"] = [started, time.time()]
        return out

    def _write_pairs(self, prompts: list, completions: list[str], out: dict) -> None:
        """Append this batch's (chosen, rejected) pairs — the loop picks the same ones — as jsonl rows
        the DPO stage reads (``prompt``, ``chosen``, ``rejected``)."""
        import json

        from fnsft.rl.preference import preference_pairs

        g = self.pairs_group
        if len(prompts) % g or any(prompts[i] != prompts[i - i % g] for i in range(len(prompts))):
            return  # not a training batch of groups (a held-out evaluation)
        masked = out.get("masked") or [False] * len(completions)
        pairs = preference_pairs(out["rewards"], [not m for m in masked], g)
        with open(self.pairs_path, "a", encoding="utf-8") as f:
            for w, l in pairs:
                f.write(json.dumps({"prompt": prompts[w], "chosen": completions[w], "rejected": completions[l],
                                    "score_chosen": out["rewards"][w], "score_rejected": out["rewards"][l]},
                                   ensure_ascii=False) + "\n")

    def _judge_term(self, prompts: list, completions: list[str], out: dict) -> None:
        from fnsft.judges.base import delta, summarize

        t0 = time.perf_counter()
        scores = self.judge.pointwise(prompts, completions)
        out["seconds"]["judge"] = time.perf_counter() - t0
        masked = [s is None for s in scores]
        known = [s for s in scores if s is not None]
        fill = sum(known) / len(known) if known else 0.0  # a placeholder: masked rows get no gradient
        out["components"]["judge"] = [fill if s is None else s for s in scores]
        out["rewards"] = [r + self.judge_weight * j for r, j in zip(out["rewards"], out["components"]["judge"])]
        out["masked"] = masked
        now = self.judge.counters()
        out["judge_counters"] = delta(now, self._judge_seen)
        out["metrics"] = summarize(out["judge_counters"])
        self._judge_seen = now

    def judge_stats(self) -> dict:
        """The judge's cumulative metrics (``{}`` without a judge)."""
        return self.judge.stats() if self.judge is not None else {}
