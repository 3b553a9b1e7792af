"""Score a batch's completions with each distinct prompt run through the model once.

A GRPO/RLOO batch holds every prompt ``num_generations`` times. Under causal attention a
prompt's keys and values do not depend on what follows it, so the prompt part of the forward
pass is the same for every copy: :func:`shared_prompt_logits` runs the distinct prompts once
(keeping their KV cache, in the autograd graph when training), expands that cache to every
row, and runs only the completions on top of it. The logits are the ones a full forward over
``[prompt, completion]`` gives (tested to float32 rounding), and so are the gradients: each
prompt's cache receives the sum of its copies' gradients, as the full pass would give its
repeated rows. The generation role does the same for sampling (``GenerationActor._prefill``).

With 8 prompts x 4 completions of SmolLM2 (prompts ~50 tokens with the chat template,
completions 16) the learner computes 27 instead of 66 positions per row.
"""

from __future__ import annotations

from typing import Optional

from fnsft.models.forward_args import forward_accepts


# Layers whose cache is keys and values that a continued pass only reads (transformers' layer_types).
ATTENTION_LAYERS = {"full_attention", "sliding_attention"}


def _expandable(cache) -> bool:
    """A transformers Cache whose every layer holds keys/values (DynamicLayer and its sliding
    window): expanding those by index_select is exact and the continued pass only appends."""
    try:
        from transformers.cache_utils import Cache, DynamicLayer, LinearAttentionCacheLayerMixin
    except ImportError:  # an older transformers: its caches are key/value only
        from transformers.cache_utils import Cache

        return isinstance(cache, Cache) and hasattr(cache, "reorder_cache")
    layers = getattr(cache, "layers", None)
    return (isinstance(cache, Cache) and layers is not None and
            all(isinstance(l, DynamicLayer) and not isinstance(l, LinearAttentionCacheLayerMixin) for l in layers))


def prompt_groups(prompt_ids, prompt_mask):
    """``(first, index)``: the row of each distinct prompt's first copy and, for every row, the
    number of its distinct prompt; ``None`` when no prompt repeats (nothing to share)."""
    import torch

    key = torch.cat([prompt_ids, prompt_mask.to(prompt_ids.dtype)], dim=1)
    unique, index = torch.unique(key, dim=0, return_inverse=True)
    if len(unique) == len(key):
        return None
    first = torch.full((len(unique),), len(key), dtype=torch.long, device=index.device)
    first.scatter_reduce_(0, index, torch.arange(len(key), device=index.device), reduce="amin")
    return first, index


def can_share(model, batch: dict) -> bool:
    """Whether the shared-prompt pass applies: a prompt longer than one token and at least two
    completion columns, an HF causal LM with ``logits_to_keep`` and only (full or sliding-window)
    attention layers, no activation checkpointing in training (HF turns the KV cache off there)."""
    if batch["prompt_ids"].shape[1] < 2 or batch["completion_ids"].shape[1] < 2:
        return False
    if not forward_accepts(model, "logits_to_keep"):
        return False
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    if not set(getattr(text, "layer_types", None) or ()) <= ATTENTION_LAYERS:
        return False  # linear-attention / state-space layers: their cache is a running state
    checkpointing = getattr(base, "is_activation_checkpointing", None)
    if checkpointing is None:  # transformers < 5.x's name
        checkpointing = getattr(base, "is_gradient_checkpointing", False)
    return not (model.training and checkpointing)


def shared_prompt_logits(model, batch: dict, position_ids) -> Optional[object]:
    """Logits ``(B, C, V)`` scoring each completion token (column t predicts token t), or ``None``
    (then the caller runs the full pass) when no prompt repeats or the model's cache is not one of
    keys and values. ``position_ids``: those of the full ``[prompt, completion]`` rows."""
    import torch

    p_ids, p_mask = batch["prompt_ids"], batch["prompt_mask"]
    c_ids = batch["completion_ids"]
    # environment tokens of a multi-turn episode are attended (fnsft.models.forward.attended)
    c_mask = batch["completion_attention"] if "completion_attention" in batch else batch["completion_mask"]
    groups = prompt_groups(p_ids, p_mask)
    if groups is None:
        return None
    first, index = groups
    P, C = p_ids.shape[1], c_ids.shape[1]
    # The distinct prompts once: their cache, and the logit of the last prompt token (scores token 0).
    head = model(input_ids=p_ids[first], attention_mask=p_mask[first], position_ids=position_ids[first, :P],
                 use_cache=True, logits_to_keep=1)
    name = "cache" if forward_accepts(model, "cache") else "past_key_values"  # transformers 5.2x: cache
    cache = getattr(head, name, None) or getattr(head, "past_key_values", None)
    if not _expandable(cache):  # e.g. a remote-code model's tuple cache: the full pass instead
        return None
    cache.reorder_cache(index)  # index_select along the batch: differentiable, one copy per row
    # The completions on top; the last completion token predicts nothing that is scored.
    tail = model(input_ids=c_ids[:, :C - 1], attention_mask=torch.cat([p_mask, c_mask[:, :C - 1]], dim=1),
                 position_ids=position_ids[:, P:P + C - 1], use_cache=True, logits_to_keep=0, **{name: cache})
    return torch.cat([head.logits[index], tail.logits], dim=1)
