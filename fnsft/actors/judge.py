"""The local judge role (YAML ``judge.type: local``): a HF causal LM that reads judge prompts and
answers with next-token probabilities of the answer tokens — no sampling, one forward pass per
batch. :class:`JudgeActor` is plain Python; :func:`start_judge_pool` makes ``num_replicas`` of it.
"""

from __future__ import annotations

import time
from typing import Optional

from fnsft.actors.serving import ModelServer


def option_token_ids(tokenizer, options: list[str]) -> dict[str, list[int]]:
    """Single-token spellings of each answer (``"A"``, ``" A"``, ``"Yes"``...).

    An option with no single-token spelling is left out (its probability cannot be read from one
    step), as is a spelling that is another option's token (``"10"`` starting with ``"1"``) — the
    shorter option keeps it.
    """
    owner: dict[int, str] = {}
    for opt in sorted(options, key=len):
        variants = {opt, " " + opt}
        if opt.isalpha() and len(opt) > 1:  # yes/Yes/YES; a lone "a" is an article, not an answer
            variants |= {v.capitalize() for v in variants} | {v.lower() for v in variants} | {v.upper() for v in variants}
        for v in variants:
            ids = tokenizer.encode(v, add_special_tokens=False)
            if len(ids) == 1 and ids[0] not in owner:
                owner[ids[0]] = opt
    out: dict[str, list[int]] = {o: [] for o in options}
    for tid, opt in owner.items():
        out[opt].append(tid)
    return {o: sorted(ids) for o, ids in out.items() if ids}


class JudgeActor(ModelServer):
    """Answer judge prompts with probabilities over the answer options (a :class:`ModelServer`).

    Args:
        model: a :class:`~fnsft.models.handle.ModelHandle` or a model folder / hub id / ``builtin:``.
        batch_size: judge prompts per forward pass; ``max_length``: prompt tokens kept (the end).
    """

    def __init__(self, model, dtype: str = "auto", batch_size: int = 16, max_length: int = 1024,
                 apply_chat_template: bool = True, replica: int = 0):
        from fnsft.models.handle import ModelHandle
        from fnsft.models.loading import load_tokenizer

        if isinstance(model, str):
            from fnsft.models.spec import resolve_model_path

            model = ModelHandle(source=resolve_model_path(model))
        super().__init__(model, dtype=dtype, batch_size=batch_size, replica=replica)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.tokenizer = load_tokenizer(model.source, model.trust_remote_code)
        self.max_length = max_length
        self.apply_chat_template = apply_chat_template
        self._options: dict[tuple, dict[str, list[int]]] = {}

    def option_probs(self, texts: list[str], options: list[str]) -> list[dict]:
        """Per judge prompt: ``{"probs": {option: P(option is the next token)}, "mass": Σ, "latency_s"}``.

        Probabilities are over the whole vocabulary (a spelling's variants summed); ``mass`` is
        how much of the next-token distribution the answers hold.
        """
        import torch

        from fnsft.models.tokens import encode_prompts, pad_sequences

        key = tuple(options)
        if key not in self._options:
            self._options[key] = option_token_ids(self.tokenizer, options)
        ids_by_opt = self._options[key]
        out = []
        # Left-cut: the question and the answer instruction sit at the end of a judge prompt.
        all_ids = [ids[-self.max_length:] for ids in encode_prompts(self.tokenizer, texts, self.apply_chat_template)]
        for rows in self.batches(len(texts)):
            t0 = time.perf_counter()
            encoded = all_ids[rows]
            ids, mask = pad_sequences(encoded, self.tokenizer.pad_token_id, "left")
            ids_t, mask_t = torch.as_tensor(ids, device=self.device), torch.as_tensor(mask, device=self.device)
            position_ids = (mask_t.cumsum(-1) - 1).clamp(min=0)
            with torch.no_grad():
                logits = self.model(input_ids=ids_t, attention_mask=mask_t, position_ids=position_ids,
                                    use_cache=False, logits_to_keep=1).logits[:, -1].float()
            probs = torch.softmax(logits, dim=-1).cpu()
            per = (time.perf_counter() - t0) / len(encoded)
            for row, row_ids in zip(probs, encoded):
                p = {o: float(row[tids].sum()) for o, tids in ids_by_opt.items()}
                out.append({"probs": p, "mass": sum(p.values()), "latency_s": per, "tokens": len(row_ids)})
        return out


def start_judge_pool(model, settings, name: str = "judge", dtype: str = "auto",
                     pg=None, bundle_offset: Optional[int] = None):
    """``settings.num_replicas`` judge actors (an :class:`~fnsft.actors.group.ActorGroup`)."""
    from fnsft.actors.group import ActorGroup, RoleResources

    return ActorGroup(JudgeActor, RoleResources(settings.num_replicas, settings.num_cpus, settings.num_gpus),
                      args=(model,), kwargs={"dtype": dtype, "batch_size": settings.batch_size,
                                             "max_length": settings.max_length},
                      pg=pg, bundle_offset=bundle_offset, name=f"{name}-judge")
