"""``ModelHandle``: how a model travels from one stage to the next.

A handle names the model's architecture/tokenizer directory (``source``) and where its weights
are: in Ray's object store as numpy arrays (``weights``, zero-copy for every process on the
node), in a directory (``path``), or, for a base model, in ``source`` itself. Loading it gives an
ordinary ``transformers`` model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any, Optional


@dataclass
class ModelHandle:
    source: str
    weights: Any = None  # ray.ObjectRef of fnsft.models.weights.state_dict_to_numpy(...)
    path: Optional[str] = None
    fingerprint: str = ""
    trust_remote_code: bool = False
    torch_dtype: str = "auto"
    history: list[str] = field(default_factory=list)  # stages that produced these weights

    def with_weights(self, weights=None, path=None, stage: str | None = None, fingerprint: str = ""):
        return replace(self, weights=weights, path=path, fingerprint=fingerprint,
                       history=self.history + ([stage] if stage else []))

    @property
    def weights_dir(self) -> str:
        """A directory with exactly these weights, when one exists."""
        return self.path or self.source

    def load_state_dict(self) -> dict:
        import ray

        from fnsft.models.weights import numpy_to_state_dict

        return numpy_to_state_dict(ray.get(self.weights))

    def load(self, dtype: Any = None, **kwargs):
        """The model as a ``transformers`` causal LM (float32 on CPU unless ``dtype``)."""
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        from fnsft.models.loading import resolve_torch_dtype

        dtype = dtype or resolve_torch_dtype(self.torch_dtype, torch.cuda.is_available())
        if self.weights is None:
            return AutoModelForCausalLM.from_pretrained(
                self.weights_dir, dtype=dtype, trust_remote_code=self.trust_remote_code, **kwargs)
        config = AutoConfig.from_pretrained(self.source, trust_remote_code=self.trust_remote_code)
        model = AutoModelForCausalLM.from_config(
            config, dtype=dtype, trust_remote_code=self.trust_remote_code)
        model.load_state_dict(self.load_state_dict(), strict=True)
        gen_dir = self.source
        if os.path.isfile(os.path.join(gen_dir, "generation_config.json")):
            from transformers import GenerationConfig

            model.generation_config = GenerationConfig.from_pretrained(gen_dir)
        return model

    def load_tokenizer(self):
        from fnsft.models.loading import load_tokenizer

        return load_tokenizer(self.source, self.trust_remote_code)

    def materialize(self, out_dir: str) -> str:
        """A directory ``from_pretrained`` can read (writes one only when the weights are in memory)."""
        if self.weights is None:
            return self.weights_dir
        if not os.path.isfile(os.path.join(out_dir, "config.json")):
            model = self.load()
            model.save_pretrained(out_dir, safe_serialization=True)
            self.load_tokenizer().save_pretrained(out_dir)
        return out_dir
