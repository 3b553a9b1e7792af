"""State dicts as numpy arrays, so Ray's object store shares them zero-copy.

Pickled torch tensors through the object store are slower than disk (FACTS.md); numpy arrays
are read by every process on the node without a copy. bfloat16 has no numpy dtype, so such
tensors travel as int16 bit patterns with the dtype recorded beside them.

A policy's weights for the generation actors: with LoRA only the adapter tensors move, keyed by
their PEFT parameter names, which are the same in every process that wraps the same base with the
same ``LoraConfig``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np


def state_dict_to_numpy(state_dict: dict[str, Any]) -> dict[str, Any]:
    import torch

    arrays, bf16 = {}, []
    for name, tensor in state_dict.items():
        t = tensor.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            t = t.view(torch.int16)
            bf16.append(name)
        arrays[name] = t.numpy()
    return {"arrays": arrays, "bf16": bf16}


def numpy_to_state_dict(packed: dict[str, Any], copy: bool = True) -> dict[str, Any]:
    import torch

    out = {}
    bf16 = set(packed.get("bf16", ()))
    for name, array in packed["arrays"].items():
        # Object-store arrays are read-only; copy=True gives tensors a model may own.
        t = torch.tensor(array) if copy else torch.from_numpy(array)
        out[name] = t.view(torch.bfloat16) if name in bf16 else t
    return out


def put_weights(model_or_state_dict: Any):
    """``ray.put`` a model's weights as numpy arrays (owned by the calling process)."""
    import ray

    sd = model_or_state_dict if isinstance(model_or_state_dict, dict) else model_or_state_dict.state_dict()
    return ray.put(state_dict_to_numpy(sd))


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
