"""Score only the labelled positions through TRL's fused LM head, on CPUs too.

TRL's SFT and DPO trainers compute the loss with a fused, vocabulary-tiled LM head
(``trl.trainer.utils.add_fused_lm_head``). On CUDA/XPU it projects only the positions whose
label is not -100; on every other device it projects *all* positions and masks afterwards,
because a changing number of rows would recompile Neuron's graphs. A CPU has no graphs to
recompile, so that is pure waste there: on the shipped Alpaca data at ``max_length`` 128 only
25 % of positions carry a label (prompt and padding are masked), and the LM head of a small
model is a fifth of its forward FLOPs. Compacting on CPU computes the same per-token
log-probabilities (tested to 1e-6) and made a SmolLM2 LoRA SFT step 1.19x faster here
(docs/performance.md).

TRL decides with a name it imports into ``trl.trainer.utils``; that name is used for this
decision only (the kernels keep their own), so rebinding it changes nothing else. If a TRL
version moves it, :func:`compact_labelled_positions` leaves TRL as it is and returns False (the
stage's metric ``lm_head_positions`` then says ``trl default``).
"""

from __future__ import annotations

_MARK = "_fnsft_compacts_cpu"


def compact_labelled_positions() -> bool:
    """Make TRL's fused LM head skip unlabelled positions on CPU as it does on CUDA; idempotent.
    Returns whether the head now compacts on CPU."""
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
    trl_utils._use_triton = compact_on
    return True
