"""Token layout shared by the role actors and the RL learner.

One batch layout everywhere (as in TRL): prompts **left**-padded to ``P`` tokens, completions
**right**-padded to ``C`` tokens, so the logits that score completion token ``t`` sit at the
same column ``P - 1 + t`` for every row. Every token-level RL tensor is ``(B, C)`` with
``completion_mask`` (1 on generated tokens up to and including EOS).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np


# Prompts -------------------------------------------------------------------------------
def encode_prompts(tokenizer, prompts: list, apply_chat_template: bool = True) -> list[list[int]]:
    """Token ids of each prompt, ready for generation.

    A list of messages always goes through the chat template; a string does when
    ``apply_chat_template`` and the tokenizer has one (as one user turn), else it is used raw.
    """
    out = []
    has_template = bool(getattr(tokenizer, "chat_template", None))
    for p in prompts:
        if isinstance(p, list) or (apply_chat_template and has_template):
            messages = p if isinstance(p, list) else [{"role": "user", "content": p}]
            text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            out.append(tokenizer(text, add_special_tokens=False)["input_ids"])
        else:
            out.append(tokenizer(p)["input_ids"])
    return out


def prompt_text(prompt: Any) -> str:
    """A prompt as plain text for reward functions and logs (the last user turn for messages)."""
    if isinstance(prompt, list):
        return prompt[-1]["content"] if prompt else ""
    return str(prompt)


# Padding -------------------------------------------------------------------------------
def pad_sequences(seqs: list[list[int]], pad_id: int, side: str, length: Optional[int] = None):
    """``(ids, mask)`` int64 numpy arrays of shape ``(len(seqs), length or max len)``."""
    n = max([len(s) for s in seqs] + [1]) if length is None else length
    ids = np.full((len(seqs), n), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), n), dtype=np.int64)
    for i, s in enumerate(seqs):
        s = list(s)[:n]
        if side == "left":
            ids[i, n - len(s):] = s
            mask[i, n - len(s):] = 1
        else:
            ids[i, : len(s)] = s
            mask[i, : len(s)] = 1
    return ids, mask


def rollout_arrays(prompt_ids: list[list[int]], completion_ids: list[list[int]], pad_id: int) -> dict[str, np.ndarray]:
    """The padded batch: ``prompt_ids/prompt_mask (B, P)`` left-padded, ``completion_ids/completion_mask (B, C)``."""
    p_ids, p_mask = pad_sequences(prompt_ids, pad_id, "left")
    c_ids, c_mask = pad_sequences(completion_ids, pad_id, "right")
    return {"prompt_ids": p_ids, "prompt_mask": p_mask, "completion_ids": c_ids, "completion_mask": c_mask}


def cut_at_eos(ids: list[int], eos_ids: set[int], pad_id: Optional[int]) -> list[int]:
    """Generated ids up to and including the first EOS; trailing padding dropped."""
    out = []
    for t in ids:
        if t in eos_ids:
            out.append(t)
            return out
        out.append(t)
    while out and pad_id is not None and out[-1] == pad_id and pad_id not in eos_ids:
        out.pop()
    return out


def eos_token_ids(model, tokenizer) -> set[int]:
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if ids is None:
        ids = tokenizer.eos_token_id
    ids = ids if isinstance(ids, (list, tuple)) else [ids]
    return {int(i) for i in ids if i is not None}


def to_torch(arrays: dict[str, np.ndarray], device=None) -> dict:
    import torch

    # A copy: arrays from the object store are read-only.
    return {k: torch.tensor(np.asarray(v), device=device) for k, v in arrays.items()}


def same_vocabulary(tokenizer, source: str, trust_remote_code: bool = False) -> str:
    """``""`` when the tokenizer at ``source`` gives every token the id ``tokenizer`` gives it (one
    model's log-probs can score the other's token ids); otherwise what differs, in a few words."""
    from transformers import AutoTokenizer

    if tokenizer is None:
        return ""
    other = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    mine, theirs = tokenizer.get_vocab(), other.get_vocab()
    if len(mine) != len(theirs):
        return f"{len(theirs)} tokens, the policy's {len(mine)}"
    for token, i in mine.items():
        if theirs.get(token) != i:
            return f"token {token!r} has id {theirs.get(token)}, the policy's {i}"
    return ""
