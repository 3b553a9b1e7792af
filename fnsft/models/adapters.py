"""LoRA adapters on disk: what a LoRA stage keeps, and how its merged weights are rebuilt.

A LoRA stage (``use_peft: true``) writes its trained adapters to ``<NN>_<stage>/adapter/``
(``adapter_model.safetensors``, ``adapter_config.json`` and the tokenizer: a few MB) beside the
merged full copy in ``<NN>_<stage>/model/``. The merged copy is what the next stage, a resume and
``final_model`` read; the pipeline keeps one only where it is needed (fnsft.pipeline.disk), since
the adapter and the stage's input model rebuild it: :func:`merge_adapter`, the same float32
merge the stage itself handed on.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

ADAPTER_DIR = "adapter"
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")


def has_adapter(path: Any) -> bool:
    """Whether ``path`` is a folder holding a saved LoRA adapter."""
    return bool(path) and all(os.path.isfile(os.path.join(path, f)) for f in ADAPTER_FILES)


def keep_adapter(trained_dir: str, dest: str, tokenizer: Any, base_name: str) -> str:
    """Copy the adapter PEFT saved in ``trained_dir`` to ``dest`` with the tokenizer.

    ``base_name`` (the stage's input model: a base model or the previous stage's folder) goes
    into ``adapter_config.json``'s ``base_model_name_or_path``, so PEFT's own loaders find it.
    """
    tmp = dest + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for f in ADAPTER_FILES:
        shutil.copy2(os.path.join(trained_dir, f), os.path.join(tmp, f))
    cfg_path = os.path.join(tmp, "adapter_config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["base_model_name_or_path"] = base_name
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2)
    tokenizer.save_pretrained(tmp)  # a rebuilt model needs it, and the merged copy may be gone
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return dest


def merge_adapter(base_model: Any, adapter_dir: str, dtype: Any):
    """``base_model`` (loaded in float32, so small adapter deltas are not rounded away twice)
    with the adapter of ``adapter_dir`` merged in, cast to ``dtype``."""
    from peft import PeftModel

    return PeftModel.from_pretrained(base_model, adapter_dir).merge_and_unload().to(dtype)
