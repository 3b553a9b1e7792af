"""Model-side helpers shared by the role actors and the RL trainer.

One batch layout everywhere (as in TRL): prompts **left**-padded to ``P`` tokens, completions
**right**-padded to ``C`` tokens, so the logits that score completion token ``t`` sit at the
same column ``P - 1 + t`` for every row. Every token-level RL tensor is ``(B, C)`` with
``completion_mask`` (1 on generated tokens up to and including EOS).

Weights move between processes as numpy arrays (:mod:`fnsft.models.weights`); with LoRA only
the adapter tensors move, keyed by their PEFT parameter names, which are the same in every
process that wraps the same base with the same ``LoraConfig``.
"""

from __future__ import annotations

import hashlib
from typing import Any, Optional

import numpy as np

from fnsft.actors.forward_args import forward_accepts


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


# Forward passes ------------------------------------------------------------------------
def sampling_filter(logits, top_k: int = 0, top_p: float = 1.0, keep=None):
    """``logits (N, V)`` with the tokens HF's top-k / top-p warpers drop set to ``-inf``.

    The same rules as ``generate`` (temperature already applied; top-k, then top-p, at least
    one token kept), so log-probs of sampled tokens are those of the distribution they were
    drawn from. ``keep (N,)``: a token id per row never dropped — the sampled one; after an
    update it may fall outside the new nucleus, and a ``-inf`` log-prob would make the
    importance ratio 0 and its log NaN.
    """
    import torch

    if top_k and 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        drop = logits < kth
    else:
        drop = torch.zeros_like(logits, dtype=torch.bool)
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits.masked_fill(drop, float("-inf")), dim=-1)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        sorted_drop = cum <= 1 - top_p
        sorted_drop[..., -1:] = False
        drop = drop | sorted_drop.scatter(-1, order, sorted_drop)
    if keep is not None:
        drop.scatter_(-1, keep.unsqueeze(-1), False)
    return logits.masked_fill(drop, float("-inf"))


def _token_logprobs(logits, ids, temperature: float, top_k: int, top_p: float, need_entropy: bool,
                    entropy_grad: bool = True):
    """Selective log-softmax (TRL's pattern): one row at a time in float32, so the full
    ``(B, C, V)`` float32 tensor is never built. Returns ``(logprobs (B, C), entropy or None)``."""
    import torch

    filtered = bool(top_k) or (top_p is not None and top_p < 1.0)
    lps, ents = [], []
    for row, row_ids in zip(logits, ids):  # row: (C, V) in the model's dtype
        z = row.float()
        if temperature and temperature != 1.0:
            z = z / temperature
        if filtered:
            z = sampling_filter(z, top_k, top_p, keep=row_ids)
        log_z = torch.logsumexp(z, dim=-1)
        lps.append(z.gather(-1, row_ids.unsqueeze(-1)).squeeze(-1) - log_z)
        if need_entropy:
            ents.append(_entropy(z, log_z, filtered) if entropy_grad else _entropy(z.detach(), log_z.detach(), filtered))
    return torch.stack(lps), (torch.stack(ents) if need_entropy else None)


def _entropy(z, log_z, filtered: bool):
    """``H = log Z - sum p z`` per row; filtered tokens have p = 0 and z = -inf: zero z there,
    since 0 * -inf is NaN (in the forward and in the gradient)."""
    import torch

    finite_z = z.masked_fill(torch.isinf(z), 0.0) if filtered else z
    return log_z - (torch.softmax(z, dim=-1) * finite_z).sum(-1)


def completion_forward(model, batch: dict, temperature: float = 1.0, value_head=None,
                       need_logits: bool = False, detach_value_input: bool = False,
                       need_hidden: bool = False, need_entropy: bool = False,
                       top_k: int = 0, top_p: float = 1.0, entropy_grad: bool = True,
                       share_prompts: bool = True) -> dict:
    """Score the completions of a padded batch in one forward pass.

    ``batch`` holds torch tensors ``prompt_ids, prompt_mask, completion_ids, completion_mask``.
    Returns ``logprobs (B, C)`` of the sampled tokens under the distribution they were sampled
    from: ``softmax(logits / temperature)`` restricted by ``top_k`` / ``top_p`` (YAML
    ``rl.generation`` sampling; 0 / 1.0 = off) exactly as ``generate`` restricts it.
    Optional: ``entropy (B, C)`` per token when ``need_entropy`` (the bonus; no ``(B, C, V)``
    tensor kept; ``entropy_grad=False``: a logged stat only, no graph), ``logits (B, C, V)`` float32 when ``need_logits`` (temperature applied, not
    filtered; TRPO's KL), ``values (B, C)`` when a ``value_head`` is given (the value of the
    state before each token, computed in the head's dtype; ``detach_value_input`` keeps the
    critic's gradient out of the policy, as TRPO needs), and ``hidden (B, C, H)`` (the last
    hidden states the critic reads) when ``need_hidden``. Rows that repeat a prompt share one
    pass over it (``share_prompts``; :mod:`fnsft.actors.shared_prompt`), same logits.
    """
    import torch

    from fnsft.actors.shared_prompt import can_share, shared_prompt_logits

    p_ids, c_ids = batch["prompt_ids"], batch["completion_ids"]
    input_ids = torch.cat([p_ids, c_ids], dim=1)
    attention = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    # Left padding: positions count real tokens only, as during generation.
    position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
    P, C = p_ids.shape[1], c_ids.shape[1]
    raw = None
    full_pass_needed = value_head is not None or need_hidden  # every position's hidden state
    if share_prompts and not full_pass_needed and can_share(model, batch):
        # A repeated prompt (GRPO's num_generations) runs once (fnsft.actors.shared_prompt).
        raw = shared_prompt_logits(model, batch, position_ids)
    if raw is None:
        kwargs = {"logits_to_keep": C + 1} if accepts_logits_to_keep(model) else {}
        out = model(input_ids=input_ids, attention_mask=attention, position_ids=position_ids,
                    output_hidden_states=value_head is not None or need_hidden, use_cache=False, **kwargs)
        # With logits_to_keep the LM head runs on the last C + 1 positions only (P - 1 ... P + C - 1):
        # the prompt's logits are never needed, and on a 49k vocabulary they cost a fifth of the pass.
        raw = out.logits[:, :C] if kwargs else out.logits[:, P - 1 : P + C - 1]
    logprobs, entropy = _token_logprobs(raw, c_ids, temperature, top_k, top_p, need_entropy, entropy_grad)
    result = {"logprobs": logprobs}
    if need_entropy:
        result["entropy"] = entropy
    if need_logits:
        logits = raw.float()
        result["logits"] = logits / temperature if temperature and temperature != 1.0 else logits
    if value_head is not None or need_hidden:
        hidden = out.hidden_states[-1][:, P - 1 : P + C - 1]
        if need_hidden:
            result["hidden"] = hidden
    if value_head is not None:
        if detach_value_input:
            hidden = hidden.detach()
        # The head follows the policy's compute dtype: under autocast the hidden state is half.
        head_dtype = next(value_head.parameters()).dtype
        result["values"] = value_head(hidden.to(head_dtype)).squeeze(-1).float()
    return result


def accepts_logits_to_keep(model) -> bool:
    """Whether ``model``'s forward takes ``logits_to_keep`` (HF causal LMs do; PEFT passes it through)."""
    return forward_accepts(model, "logits_to_keep")


def to_torch(arrays: dict[str, np.ndarray], device=None) -> dict:
    import torch

    # A copy: arrays from the object store are read-only.
    return {k: torch.tensor(np.asarray(v), device=device) for k, v in arrays.items()}


class ValueHead:
    """Factory for the critic: a linear layer on the policy's last hidden state (one value per token)."""

    @staticmethod
    def build(hidden_size: int):
        import torch

        head = torch.nn.Linear(hidden_size, 1)
        # Small init: the critic starts near 0 instead of adding noise to the first advantages.
        torch.nn.init.normal_(head.weight, std=1.0 / (hidden_size ** 0.5) * 0.1)
        torch.nn.init.zeros_(head.bias)
        return head


# Weights -------------------------------------------------------------------------------
def policy_weights(model, lora_only: bool) -> dict:
    """The tensors the generation actors need: LoRA adapters only, or the full state dict."""
    if lora_only:
        return {n: p.detach() for n, p in model.named_parameters() if "lora_" in n}
    return model.state_dict()


def load_policy_weights(model, state: dict, lora_only: bool) -> None:
    """Copy ``state`` (torch tensors) into ``model``; every expected tensor must be present."""
    import torch

    if lora_only:
        params = dict(model.named_parameters())
        missing = [n for n in params if "lora_" in n and n not in state]
        unknown = [n for n in state if n not in params]
        if missing or unknown:
            raise ValueError(f"LoRA weight sync: {len(missing)} adapter tensors missing, {len(unknown)} unknown "
                             f"(e.g. {(missing or unknown)[0]}); do both sides use the same LoRA config?")
        with torch.no_grad():
            for n, t in state.items():
                params[n].copy_(t)
        return
    model.load_state_dict(state, strict=True)


def weights_checksum(state: dict) -> str:
    """SHA-256 over names, shapes, dtypes and bytes, in name order (equal iff weights are equal)."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name]
        arr = t.detach().cpu().contiguous() if hasattr(t, "detach") else t
        if hasattr(arr, "dtype") and str(arr.dtype) == "torch.bfloat16":
            import torch

            arr = arr.view(torch.int16)
        arr = arr.numpy() if hasattr(arr, "numpy") else np.asarray(arr)
        h.update(name.encode())
        h.update(str(arr.shape).encode())
        h.update(str(arr.dtype).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def nbytes(packed: dict) -> int:
    return int(sum(a.nbytes for a in packed["arrays"].values()))
