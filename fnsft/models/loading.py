"""Load tokenizers and models with the dtype, quantization and LoRA a stage asks for."""

from __future__ import annotations

import logging
from typing import Any, Optional

from fnsft.errors import ConfigError
from fnsft.models.builtin import CHATML_TEMPLATE

log = logging.getLogger(__name__)


def resolve_torch_dtype(name: str, on_gpu: bool, model=None):
    """The compute dtype of YAML ``torch_dtype`` for ``model`` (a handle or a folder; ``auto``:
    :func:`fnsft.models.precision.resolve_precision`). Frozen copies load in it; training loads
    trainable weights in float32 (:mod:`fnsft.models.precision`)."""
    from fnsft.models.precision import resolve_precision

    return resolve_precision(name, on_gpu, model).compute_dtype


# The chat template for models whose tokenizer has none (e.g. microsoft/DialoGPT-medium, base
# models): ChatML, the format TRL's docs and most open chat models use, written as plain text so
# no token has to be added to the vocabulary (TRL's clone_chat_template would resize embeddings).
# YAML: top-level ``default_chat_template: chatml`` (the default) or ``null``; a stage's own
# ``chat_template`` (a Jinja string or ``chatml``) always wins.
DEFAULT_CHAT_TEMPLATES = {"chatml": CHATML_TEMPLATE}
FALLBACK_ATTR = "fnsft_fallback_chat_template"  # set on a tokenizer that got the fallback


def resolve_chat_template(value: Optional[str]) -> Optional[str]:
    """A Jinja template from a config value: a template name (``chatml``) or the template itself."""
    if not value:
        return None
    return DEFAULT_CHAT_TEMPLATES.get(value, value)


def local_has_chat_template(path: str) -> Optional[bool]:
    """Whether the local tokenizer folder ``path`` carries a chat template (None: not a local
    folder, e.g. a hub id). Reads files only: no transformers import (used by validation)."""
    import json
    import os

    if not os.path.isdir(path):
        return None
    if any(os.path.exists(os.path.join(path, f)) for f in
           ("chat_template.jinja", "chat_template.json", "additional_chat_templates")):
        return True
    try:
        with open(os.path.join(path, "tokenizer_config.json"), encoding="utf-8") as f:
            return bool(json.load(f).get("chat_template"))
    except (OSError, ValueError):
        return False


def load_tokenizer(path: str, trust_remote_code: bool = False, chat_template: Optional[str] = None,
                   fallback: Optional[str] = "chatml"):
    """The tokenizer of ``path``: ``chat_template`` replaces its template; without one, the
    ``fallback`` template is used (and the tokenizer is marked with ``FALLBACK_ATTR``)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if chat_template:
        tok.chat_template = resolve_chat_template(chat_template)
    elif not getattr(tok, "chat_template", None) and fallback:
        tok.chat_template = resolve_chat_template(fallback)
        setattr(tok, FALLBACK_ATTR, fallback)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def lora_config(cfg: Any, task_type: str = "CAUSAL_LM"):
    """PEFT LoRA from a stage config's lora_* fields ("all-linear" unless targets are given)."""
    from peft import LoraConfig

    targets = cfg.lora_target_modules or "all-linear"
    return LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        target_modules=targets, bias="none", task_type=task_type,
    )


def quantization_config(cfg: Any, compute_dtype):
    if getattr(cfg, "load_in_4bit", False):
        from transformers import BitsAndBytesConfig

        return BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type=cfg.bnb_4bit_quant_type,
            bnb_4bit_compute_dtype=compute_dtype, bnb_4bit_use_double_quant=True,
        )
    if getattr(cfg, "load_in_8bit", False):
        from transformers import BitsAndBytesConfig

        return BitsAndBytesConfig(load_in_8bit=True)
    return None


def load_for_training(handle, cfg: Any, precision, scratch_dir: str):
    """The incoming model, quantized if asked, ready for TRL (LoRA is added by the trainer).

    ``precision`` (:class:`fnsft.models.precision.Precision`): a full fine-tune loads float32
    master weights (the trainer autocasts to the compute dtype); a LoRA base is frozen and
    loads in the compute dtype (PEFT makes the adapters float32).
    """
    from transformers import AutoModelForCausalLM

    dtype = precision.load_dtype(trainable=not cfg.use_peft)
    quant = quantization_config(cfg, precision.compute_dtype)
    if quant is None:
        return handle.load(dtype=dtype)
    dtype = precision.compute_dtype
    # bitsandbytes quantizes while loading, so the weights must come from a directory.
    path = handle.materialize(scratch_dir)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype, quantization_config=quant, trust_remote_code=handle.trust_remote_code)
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)


def check_peft_options(cfg: Any, zero_stage: int, deepspeed_enabled: bool, key: str) -> None:
    if (cfg.load_in_4bit or cfg.load_in_8bit) and not cfg.use_peft:
        raise ConfigError(f"{key}.load_in_4bit/load_in_8bit: quantized weights cannot be trained directly; set use_peft: true (QLoRA)")
    if cfg.load_in_4bit and cfg.load_in_8bit:
        raise ConfigError(f"{key}: load_in_4bit and load_in_8bit are exclusive; pick one")
    if (cfg.load_in_4bit or cfg.load_in_8bit) and deepspeed_enabled and zero_stage == 3:
        raise ConfigError(f"{key}.deepspeed.zero_stage: ZeRO-3 cannot shard bitsandbytes-quantized weights; use zero_stage 0-2 with QLoRA")
