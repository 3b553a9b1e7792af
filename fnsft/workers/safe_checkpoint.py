"""A checkpoint read back from ``ray.storage_path`` may run no pickled code.

Our own files load with ``weights_only=True`` or safetensors, and so do transformers' (optimizer,
scheduler, RNG state). DeepSpeed's ``engine.load_checkpoint`` does not: its checkpoint engine calls
``torch.load(..., weights_only=False)``, with no public switch. Storage shared by several jobs (an S3
bucket, an NFS folder) would then run whatever a writer put in a ``*.pt`` file. So before any rank
restores, every pickle of the folder is scanned with torch's public
``torch.serialization.get_unsafe_globals_in_checkpoint`` (it reads, it never unpickles) and the
restore is refused when a file names a global outside :data:`ALLOWED`: the types DeepSpeed's and
transformers' own checkpoints hold. Whoever can write ``storage_path`` can still replace weights —
that is what a checkpoint is — but not run code in the workers.
"""

from __future__ import annotations

import os

# What DeepSpeed 0.19 (ZeRO 0-3) and transformers' Trainer write besides tensors and plain
# containers; get_unsafe_globals_in_checkpoint reports nothing for torch's own types.
ALLOWED = frozenset({
    "deepspeed.runtime.zero.config.ZeroStageEnum",
    "deepspeed.runtime.fp16.loss_scaler.LossScaler",
    "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",
    "deepspeed.utils.tensor_fragment.fragment_address",
    "deepspeed.checkpoint.constants.ZeroStageEnum",
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
    "numpy.ndarray", "numpy.dtype", "numpy.dtypes.UInt32DType", "numpy.dtypes.Float64DType",
    "numpy.dtypes.Int64DType",
})
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl")
# Written by transformers' Trainer for people to read; nothing loads it on resume.
NEVER_LOADED = frozenset({"training_args.bin"})


def check_checkpoint_pickles(folder: str) -> None:
    """Raise :class:`fnsft.errors.StageError` (one line) if a pickle under ``folder`` names a
    global outside :data:`ALLOWED`; symlinks are not followed (a link out of the folder is refused)."""
    from torch.serialization import get_unsafe_globals_in_checkpoint

    from fnsft.errors import StageError

    for root, dirs, files in os.walk(folder):
        for name in sorted(files) + sorted(dirs):
            path = os.path.join(root, name)
            if os.path.islink(path):
                raise StageError(f"checkpoint {path}: a symbolic link; refusing to restore from it "
                                 "(checkpoints under ray.storage_path hold plain files)")
        for name in sorted(files):
            if not name.endswith(PICKLE_SUFFIXES) or name in NEVER_LOADED:
                continue
            path = os.path.join(root, name)
            try:
                unknown = [g for g in get_unsafe_globals_in_checkpoint(path) if g not in ALLOWED]
            except Exception as e:  # not a torch file at all
                raise StageError(f"checkpoint {path}: not a readable torch file ({type(e).__name__}: {e}); "
                                 "refusing to restore from it") from None
            if unknown:
                raise StageError(f"checkpoint {path}: holds pickled {', '.join(unknown[:3])} — code that would run "
                                 "on load; refusing to restore from it (only tensors and DeepSpeed's own types "
                                 "are restored: check who can write ray.storage_path)")
