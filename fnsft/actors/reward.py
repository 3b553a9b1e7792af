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

    def _text(self, prompt: Any, completion: str) -> str:
        if self.apply_chat_template:
            messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": str(prompt)}]
            return self.tokenizer.apply_chat_template(
                messages + [{"role": "assistant", "content": completion}], tokenize=False)
        from fnsft.actors.modeling import prompt_text

        return prompt_text(prompt) + completion

    def __call__(self, prompts, completions, **_) -> list[float]:
        import torch

        texts = [self._text(p, c) for p, c in zip(prompts, completions)]
        scores: list[float] = []
        self.tokenizer.padding_side = "right"
        for rows in self.batches(len(texts)):
            enc = self.tokenizer(texts[rows], return_tensors="pt", padding=True,
                                 truncation=True, add_special_tokens=not self.apply_chat_template).to(self.device)
            with torch.no_grad():
                logits = self.model(**enc).logits
            scores += logits[:, 0].float().tolist()
        return scores


class RewardActor:
    """Sum of weighted reward terms.

    Args:
        specs: :class:`fnsft.rl.rewards.RewardSpec` list (already validated).
        apply_chat_template: format (prompt, completion) with the reward model's chat template.
    """

    def __init__(self, specs: list, apply_chat_template: bool = True, replica: int = 0):
        from fnsft.rl.rewards import rule_function

        self.replica = replica
        self.terms: list[tuple[str, float, Any, dict]] = []
        for spec in specs:
            if spec.type == "model":
                fn, fixed = SequenceClassifierReward(spec.path, apply_chat_template), {}
            else:
                fn, fixed = rule_function(spec)
            self.terms.append((spec.label, float(spec.weight), fn, fixed))

    def ready(self) -> bool:
        return True

    def score(self, prompts: list, completions: list[str], columns: Optional[dict[str, list]] = None,
              completion_ids: Optional[list[list[int]]] = None) -> dict[str, Any]:
        """``{"rewards": [...], "components": {label: [...]}, "seconds": {label: s}}``.

        ``columns``: the dataset's extra columns, one entry per completion (``answer``...).
        ``rewards`` is the weighted sum; ``components`` the unweighted terms (for metrics).
        """
        from fnsft.actors.modeling import prompt_text
        from fnsft.rl.rewards import call_reward, weighted_sum

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
        return {"rewards": weighted_sum(components, weights), "components": components, "seconds": seconds}
