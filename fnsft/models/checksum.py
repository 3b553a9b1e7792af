"""A stable checksum of a model's weights (what the hand-off tests compare)."""

from __future__ import annotations


def weights_sha256(state_dict: dict) -> str:
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(state_dict.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()
