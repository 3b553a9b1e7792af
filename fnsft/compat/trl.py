"""TRL's private hooks fnsft uses, checked against ``trl>=1.16,<1.17`` (:data:`CHECKED`).

**The fused LM head on CPU** (:func:`compact_lm_head_on_cpu`). TRL's SFT and DPO trainers compute
the loss through a fused, vocabulary-tiled LM head (``trl.trainer.utils.add_fused_lm_head``). On
CUDA/XPU it projects only the positions whose label is not -100; on every other device it
projects all of them and masks afterwards (a changing number of rows would recompile Neuron's
graphs). A CPU has no graphs to recompile, so there that is pure waste: on the shipped data most
positions are prompt or padding. TRL makes the choice with ``_use_triton``, a name it imports
into ``trl.trainer.utils`` and uses for this decision only (the kernels keep their own binding),
so rebinding it there changes nothing else. Per-token log-probs, the loss and every gradient are
unchanged (``tests/stages/test_lm_head_compact.py``); the gain is in docs/performance.md.
Public path (another TRL): TRL's own choice, all positions on CPU.

**The DPO trainer's private steps** (:data:`DPO_HOOKS`, used by :mod:`fnsft.compat.trl_dpo`):
TRL has no public hook for shortening prompts before its length filter, for the samplers' length
column, or for where the reference log-probs of ``precompute_ref_log_probs`` are kept.
"""

from __future__ import annotations

import contextlib

from fnsft.compat import in_range

CHECKED = ((1, 16), (1, 17))  # trl>=1.16,<1.17
# (module, private name) the LM-head hook relies on.
LM_HEAD_HOOK = (("trl.trainer.utils", "_use_triton"), ("trl.trainer.utils", "add_fused_lm_head"))
# Private methods fnsft.compat.trl_dpo overrides, with the parameters it calls them with.
DPO_HOOKS = {
    ("trl", "DPOTrainer", "_prepare_dataset"): ("self", "dataset", "processing_class", "args", "dataset_name"),
    ("trl", "DPOTrainer", "_precompute_ref_logps"): ("self", "dataset", "name", "batch_size"),
    ("transformers", "Trainer", "_get_train_sampler"): ("self", "train_dataset"),
    ("transformers", "Trainer", "_get_eval_sampler"): ("self", "eval_dataset"),
}
_MARK = "_fnsft_compacts_cpu"


def checked() -> bool:
    """Whether the installed TRL is in the range these hooks were checked against."""
    return in_range("trl", *CHECKED)


def compact_lm_head_on_cpu() -> bool:
    """Make TRL's fused LM head skip unlabelled positions on CPU as it does on CUDA; idempotent.

    Returns whether the head now compacts on CPU: False outside :data:`CHECKED` or when TRL lacks
    the names (then TRL is left as it is; the stage's metric ``lm_head_positions`` says
    ``trl default``).
    """
    if not checked():
        return False
    try:
        import trl.trainer.utils as trl_utils
    except ImportError:
        return False
    decide = getattr(trl_utils, "_use_triton", None)
    if decide is None or not hasattr(trl_utils, "add_fused_lm_head"):
        return False
    if getattr(decide, _MARK, False):
        return True

    def compact_on(device) -> bool:
        return device.type == "cpu" or decide(device)

    setattr(compact_on, _MARK, True)
    compact_on.__wrapped_decide__ = decide  # TRL's own choice, for lm_head_choice(False)
    trl_utils._use_triton = compact_on
    return True


@contextlib.contextmanager
def lm_head_choice(compact: bool):
    """A context manager for side-by-side measurements in one process: TRL's fused LM head inside
    it compacts on CPU (``compact``: :func:`compact_lm_head_on_cpu`) or is TRL's own choice; on
    exit TRL's choice as it was on entry is put back. Yields whether the head compacts on CPU."""
    try:
        import trl.trainer.utils as trl_utils
    except ImportError:
        yield False
        return
    entry = getattr(trl_utils, "_use_triton", None)
    try:
        if compact:
            yield compact_lm_head_on_cpu()
        else:
            if entry is not None:
                trl_utils._use_triton = getattr(entry, "__wrapped_decide__", entry)
            yield False
    finally:
        if entry is not None:
            trl_utils._use_triton = entry
