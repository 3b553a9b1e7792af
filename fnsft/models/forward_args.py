"""Which keyword arguments a causal LM's ``forward`` takes (asked once per model and name).

HF causal LMs take ``logits_to_keep``; transformers 5.2x renamed the KV cache argument from
``past_key_values`` to ``cache``. PEFT wrappers pass both through, so the base model answers.
"""

from __future__ import annotations


def forward_accepts(model, name: str) -> bool:
    """Whether ``model``'s forward (its base model's, under PEFT) has a parameter ``name``;
    remembered on the model as ``_fnsft_<name>`` (set it to force an answer)."""
    import inspect

    attr = f"_fnsft_{name}"
    cached = getattr(model, attr, None)
    if cached is not None:
        return cached
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        ok = name in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        ok = False
    try:
        setattr(model, attr, ok)
    except Exception:  # a module that refuses attributes: ask again next time
        pass
    return ok
