"""State dicts as numpy arrays, so Ray's object store shares them zero-copy.

Pickled torch tensors through the object store are slower than disk (FACTS.md); numpy arrays
are read by every process on the node without a copy. bfloat16 has no numpy dtype, so such
tensors travel as int16 bit patterns with the dtype recorded beside them.
"""

from __future__ import annotations

from typing import Any


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
