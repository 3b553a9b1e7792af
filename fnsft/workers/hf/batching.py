"""How a training stage batches its examples: padding-free where the attention kernel allows it,
length-grouped batches elsewhere (YAML ``padding_free``, ``train_sampling_strategy``).

A padded batch computes every example at the length of its longest one; on short instruction
data most of those positions are padding. Two ways to spend the compute on useful tokens
without changing what each example's loss is:

- **padding-free** (TRL ``padding_free``): the batch's examples are concatenated into one row
  with ``position_ids`` restarting at each example. FlashAttention's varlen kernel computes each
  example's attention alone, so no work is spent on padding or across examples. Without it,
  transformers 5.24 keeps the examples apart only by building a mask over the whole row from
  ``position_ids`` (in training, without a KV cache; with a cache, as in generation, they attend
  across each other), and SDPA then computes attention over the whole concatenated row. So it
  is the default only on a GPU with the ``flash_attn`` package, and the model is switched to it.
- **length-grouped batches** (HF ``train_sampling_strategy: group_by_length``): each batch takes
  examples of similar length (random mega-batches sorted by length, HF's
  ``LengthGroupedSampler``), so padding is small with any kernel. The default everywhere else,
  and for DPO (TRL 1.16 disables ``padding_free`` for DPO).

No torch import here: validation and ``--dry_run`` describe the choice.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Optional

from fnsft.errors import ConfigError

SAMPLING_STRATEGIES = ("random", "sequential", "group_by_length", "batch_rebalance")
FLASH_ATTENTION = "flash_attention_2"


def flash_attention_available() -> bool:
    """Whether the ``flash_attn`` package (FlashAttention's varlen kernels) is installed."""
    return importlib.util.find_spec("flash_attn") is not None


def gpu_present() -> bool:
    """An NVIDIA GPU on this machine, without importing torch (for the plan)."""
    return os.path.isdir("/proc/driver/nvidia/gpus") and bool(os.listdir("/proc/driver/nvidia/gpus"))


@dataclass(frozen=True)
class Batching:
    """The batching a stage trains with: TRL ``padding_free``, HF ``train_sampling_strategy``,
    the attention kernel the model is switched to (padding-free only) and why."""

    padding_free: bool
    train_sampling_strategy: str
    attn_implementation: Optional[str]
    reason: str

    def describe(self) -> str:
        if self.padding_free:
            kernel = f"{self.attn_implementation} varlen" if self.attn_implementation else "the model's attention"
            how = f"padding-free (padding_free=true, {kernel})"
        elif self.train_sampling_strategy == "group_by_length":
            how = "length-grouped padded batches (train_sampling_strategy=group_by_length)"
        else:
            how = f"padded batches (train_sampling_strategy={self.train_sampling_strategy})"
        return f"{how}: {self.reason}"

    def trainer_args(self) -> dict:
        """The HF TrainingArguments fields (TRL's ``padding_free`` is applied by the trainer factory)."""
        return {"train_sampling_strategy": self.train_sampling_strategy}


def check_batching(config, key: str, supports_padding_free: bool = True) -> None:
    """Validation of a stage's ``padding_free``/``train_sampling_strategy`` (driver, before Ray)."""
    sampling = getattr(config, "train_sampling_strategy", None)
    if sampling is not None and sampling not in SAMPLING_STRATEGIES:
        raise ConfigError(f"{key}.train_sampling_strategy: unknown value {sampling!r} "
                          f"(accepted: {', '.join(SAMPLING_STRATEGIES)}, or leave it out for auto)")
    padding_free = getattr(config, "padding_free", None)
    if padding_free and not supports_padding_free:
        raise ConfigError(f"{key}.padding_free: TRL 1.16 disables padding-free batches for this trainer; "
                          "remove it (length-grouped batches are the default)")
    if padding_free and getattr(config, "packing", False):
        raise ConfigError(f"{key}.padding_free: packing already concatenates examples; set one of them")


def choose_batching(padding_free: Optional[bool], sampling: Optional[str], on_gpu: bool,
                    flash: Optional[bool] = None, supports_padding_free: bool = True,
                    random_order_reason: Optional[str] = None) -> Batching:
    """The batching for a stage: the user's ``padding_free``/``train_sampling_strategy`` when set,
    else padding-free on a GPU with FlashAttention and length-grouped batches elsewhere.
    ``random_order_reason``: the stage keeps HF's random order instead of length-grouped batches
    (and says why)."""
    flash = flash_attention_available() if flash is None else flash
    varlen = on_gpu and flash
    auto_padding_free = padding_free is None
    if padding_free is None:
        padding_free = supports_padding_free and varlen
        if padding_free:
            reason = "auto: GPU with FlashAttention, which keeps the concatenated examples apart"
        elif not supports_padding_free:
            reason = "auto: TRL 1.16 has no padding-free batches for this trainer"
        elif on_gpu:
            reason = "auto: no flash_attn package, so no varlen kernel to keep concatenated examples apart"
        else:
            reason = "auto: CPU, no varlen attention kernel to keep concatenated examples apart"
    else:
        reason = "padding_free set in the config"
        if padding_free and not varlen:
            reason += " (no FlashAttention: examples kept apart by a mask over the whole row)"
    if sampling is None:
        # Padding-free batches hold no padding to save: keep HF's random order.
        sampling = "random" if padding_free or random_order_reason else "group_by_length"
        if random_order_reason and not padding_free:
            reason = f"auto: {random_order_reason}" if auto_padding_free else f"{reason}; {random_order_reason}"
    else:
        reason += "; train_sampling_strategy set in the config"
    attn = FLASH_ATTENTION if padding_free and varlen else None
    return Batching(padding_free, sampling, attn, reason)


def stage_batching(config, on_gpu: bool, supports_padding_free: bool = True,
                   flash: Optional[bool] = None, random_order_reason: Optional[str] = None) -> Batching:
    """:func:`choose_batching` from a stage config's fields (absent fields mean auto)."""
    return choose_batching(getattr(config, "padding_free", None), getattr(config, "train_sampling_strategy", None),
                           on_gpu, flash, supports_padding_free, random_order_reason)
