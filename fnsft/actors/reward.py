"""The reward role: score completions with a weighted sum of reward terms (YAML ``rl.rewards``).

Every term follows one contract (:mod:`fnsft.rl.reward_terms`): built-in rules and user
functions (:mod:`fnsft.rl.rewards`, TRL's signature), sequence-classification reward models
loaded from a directory (:class:`SequenceClassifierReward`), and ready-made terms handed in by
the stage (RLAIF's judge, :class:`fnsft.judges.reward_term.JudgeTerm`). The class is plain
Python; ``ActorGroup`` makes it a Ray actor.
"""

from __future__ import annotations

import time
from typing import Any, Optional, Sequence

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
        the reward model's training (:mod:`fnsft.workers.hf.reward_trainer`) tokenizes with it."""
        return encode_for_reward(self.tokenizer, prompts, completions, self.apply_chat_template)

    def __call__(self, prompts, completions, **_) -> list[float]:
        import torch

        from fnsft.models.tokens import pad_sequences

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
    from fnsft.models.tokens import prompt_text

    if apply_chat_template:
        texts = [tokenizer.apply_chat_template(
            (p if isinstance(p, list) else [{"role": "user", "content": str(p)}])
            + [{"role": "assistant", "content": c}], tokenize=False) for p, c in zip(prompts, completions)]
    else:
        texts = [prompt_text(p) + c for p, c in zip(prompts, completions)]
    return tokenizer(texts, truncation=True, add_special_tokens=not apply_chat_template)["input_ids"]


def spec_term(spec, apply_chat_template: bool = True):
    """The term for one ``rl.rewards`` entry (:class:`fnsft.rl.rewards.RewardSpec`); a ``model``
    entry loads its reward model here, in the process that will score with it."""
    from fnsft.rl.reward_terms import FunctionTerm
    from fnsft.rl.rewards import rule_function

    if spec.type == "model":
        return FunctionTerm(spec.label, float(spec.weight), SequenceClassifierReward(spec.path, apply_chat_template),
                            text_prompts=False)
    fn, fixed = rule_function(spec)
    # Rules and user functions are bounded per batch (a catastrophic regex, a stuck function);
    # the built-in rules score row by row, a user function the whole batch at once.
    return FunctionTerm(spec.label, float(spec.weight), fn, fixed, timeout_s=float(spec.timeout_s),
                        row_wise=spec.type != "function")


class RewardActor:
    """Sum of weighted reward terms.

    Args:
        specs: :class:`fnsft.rl.rewards.RewardSpec` list (already validated), built into terms here.
        terms: ready terms (:class:`fnsft.rl.reward_terms.RewardTerm`), summed after ``specs``.
        apply_chat_template: format (prompt, completion) with the reward model's chat template.
        pairs_path, pairs_group: RLAIF ``mode: preference``: append each training batch's
            (chosen, rejected) pairs (groups of ``pairs_group`` completions) to this jsonl.
    """

    def __init__(self, specs: list, apply_chat_template: bool = True, replica: int = 0, terms: Sequence = (),
                 pairs_path: Optional[str] = None, pairs_group: int = 0):
        self.replica = replica
        self.terms = [spec_term(spec, apply_chat_template) for spec in specs] + list(terms)
        labels = [t.label for t in self.terms]
        if len(set(labels)) != len(labels):
            raise ValueError(f"reward terms need distinct names; got {labels}")
        # RLAIF mode preference: the pairs the loop's DPO step uses, also kept as a DPO dataset.
        self.pairs_path, self.pairs_group = pairs_path, pairs_group
        self.completions_scored = 0
        self.totals: dict = {}  # every term's books since the start, summed

    def ready(self) -> bool:
        return True

    def num_scored(self) -> int:
        """Completions this replica has scored (each replica scores a share of every batch)."""
        return self.completions_scored

    def term_totals(self) -> dict:
        """Every term's books (:class:`fnsft.rl.reward_terms.TermStats`) summed over all the batches
        this replica scored, by label; add the replicas' up with :func:`~fnsft.rl.reward_terms.add_stats`."""
        return dict(self.totals)

    def score(self, prompts: list, completions: list[str], columns: Optional[dict[str, list]] = None,
              completion_ids: Optional[list[list[int]]] = None) -> dict[str, Any]:
        """``{"rewards", "components", "seconds", "masked", "stats", "metrics", "span"}``.

        ``rewards`` is the weighted sum; ``components`` the unweighted terms by label (a failed
        row holds the mean of the term's other rows, a placeholder); ``masked`` the rows some term
        could not score (they must leave the update: their reward is meaningless); ``stats`` each
        term's raw books for this call (shares of one batch add up) and ``metrics`` their readable
        form; ``seconds`` each term's time; ``span`` this call's ``[start, end]`` wall clock.

        ``columns``: the dataset's extra columns, one entry per completion (``answer``...).
        """
        from fnsft.rl.reward_terms import filled, stats_metrics
        from fnsft.rl.rewards import weighted_sum

        started = time.time()
        n = len(completions)
        columns = dict(columns or {})
        if completion_ids is not None:
            columns["completion_ids"] = completion_ids
        components, seconds, stats = {}, {}, {}
        masked = [False] * n
        for term in self.terms:
            t0 = time.perf_counter()
            got = term.score(prompts, completions, columns)
            seconds[term.label] = time.perf_counter() - t0
            components[term.label] = filled(got, n, term.label)
            masked = [m or f for m, f in zip(masked, got.failed)]
            stats[term.label] = got.stats
            self.totals[term.label] = self.totals[term.label] + got.stats if term.label in self.totals else got.stats
        self.completions_scored += n
        weights = {t.label: t.weight for t in self.terms}
        out = {"rewards": weighted_sum(components, weights) if self.terms else [0.0] * n,
               "components": components, "seconds": seconds, "masked": masked, "stats": stats,
               "metrics": stats_metrics(stats)}
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
        pairs = preference_pairs(out["rewards"], [not m for m in out["masked"]], g)
        with open(self.pairs_path, "a", encoding="utf-8") as f:
            for w, l in pairs:
                f.write(json.dumps({"prompt": prompts[w], "chosen": completions[w], "rejected": completions[l],
                                    "score_chosen": out["rewards"][w], "score_rejected": out["rewards"][l]},
                                   ensure_ascii=False) + "\n")
