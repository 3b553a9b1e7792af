"""``ModelHandle``: how a model travels from one stage to the next.

A handle names the model's architecture/tokenizer directory (``source``) and where its weights
are: in Ray's object store as numpy arrays (``weights``, zero-copy for every process on the
node), in a directory (``path``), or, for a base model, in ``source`` itself. Loading it gives an
ordinary ``transformers`` model.

A handle also *is* that model for a user's stage (the guide's plugin contract): the first public
attribute a stage uses (``model.parameters()``, ``model.generate(...)``, ``model.save_pretrained``)
loads the model once in that process and delegates to it, so ``execute(model, ...)`` works as if
it had been given the model itself. Built-in stages only read the dataclass fields and pass the
handle on, so their weights are never loaded in the driver. The pipeline hands on what a stage
did to a loaded handle in place (:meth:`changed_in_place`).
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
    # LoRA stages: the adapter folder that made these weights from the stage's input. With
    # ``base`` (that input's handle) and no ``weights``/``path``, the handle is a rebuild recipe:
    # loading merges the adapter into the loaded base (a resume after the merged copy was dropped).
    adapter: Optional[str] = None
    base: Optional["ModelHandle"] = None
    # The model's width (config ``hidden_size``), read once by the driver: ``torch_dtype: auto``
    # on a CPU depends on it, and every process must choose alike (fnsft.models.precision).
    hidden_size: Optional[int] = None
    # The lazily loaded model and per-tensor sums taken at load time; never copied by
    # dataclasses.replace (init=False) and never pickled (__getstate__).
    _model: Any = field(default=None, init=False, repr=False, compare=False)
    _sums: Any = field(default=None, init=False, repr=False, compare=False)

    # The model behind the handle ---------------------------------------------------------
    def __getattr__(self, name: str):
        # Only called for names the handle lacks. Private/dunder names are never delegated, so
        # pickling, Ray's serializer and copy stay on the handle and never load weights.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.loaded_model(), name)

    def __call__(self, *args, **kwargs):  # model(**inputs): special methods bypass __getattr__
        return self.loaded_model()(*args, **kwargs)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_model"] = state["_sums"] = None
        return state

    @property
    def is_loaded(self) -> bool:
        return self.__dict__.get("_model") is not None

    def loaded_model(self):
        """The model this handle stands for, loaded once in this process (see the module doc)."""
        if self.__dict__.get("_model") is None:
            model = self.load()
            self._sums = _tensor_sums(model)
            self._model = model
        return self._model

    def changed_in_place(self) -> bool:
        """Whether a stage modified the loaded model's weights (any tensor's sum moved)."""
        if not self.is_loaded:
            return False
        return _tensor_sums(self._model) != self._sums

    def with_weights(self, weights=None, path=None, stage: str | None = None, fingerprint: str = "",
                     adapter: Optional[str] = None):
        return replace(self, weights=weights, path=path, fingerprint=fingerprint, adapter=adapter, base=None,
                       history=self.history + ([stage] if stage else []))

    @property
    def is_rebuild(self) -> bool:
        """Whether the weights exist only as ``base`` + ``adapter`` (see the field comment)."""
        return self.weights is None and not self.path and self.base is not None and bool(self.adapter)

    def model_width(self) -> Optional[int]:
        """``hidden_size``, else read from the architecture folder (a rebuild: its base's)."""
        if self.hidden_size is not None:
            return self.hidden_size
        if self.is_rebuild:
            return self.base.model_width()
        from fnsft.models.precision import model_hidden_size

        return model_hidden_size(self.source)

    @property
    def weights_dir(self) -> str:
        """A directory with exactly these weights, when one exists."""
        return self.path or self.source

    def load_state_dict(self, copy: bool = True) -> dict:
        """The weights as torch tensors (``copy=False``: read-only views of the object store)."""
        import ray

        from fnsft.models.weights import numpy_to_state_dict

        return numpy_to_state_dict(ray.get(self.weights), copy=copy)

    def load(self, dtype: Any = None, **kwargs):
        """The model as a ``transformers`` causal LM, in ``dtype`` or the compute dtype of ``torch_dtype``."""
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        from fnsft.models.loading import resolve_torch_dtype

        dtype = dtype or resolve_torch_dtype(self.torch_dtype, torch.cuda.is_available(), self)
        if self.is_rebuild:
            from fnsft.models.adapters import merge_adapter

            return merge_adapter(self.base.load(dtype=torch.float32, **kwargs), self.adapter, dtype)
        if self.weights is None:
            return AutoModelForCausalLM.from_pretrained(
                self.weights_dir, dtype=dtype, trust_remote_code=self.trust_remote_code, **kwargs)
        config = AutoConfig.from_pretrained(self.source, trust_remote_code=self.trust_remote_code)
        model = AutoModelForCausalLM.from_config(
            config, dtype=dtype, trust_remote_code=self.trust_remote_code)
        from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

        if is_deepspeed_zero3_enabled():
            # from_config built the model partitioned (deepspeed.zero.Init): fill each layer's
            # partitions straight from the object store's shared arrays (no per-rank copy).
            _load_into_zero3(model, self.load_state_dict(copy=False))
        else:
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
        if self.weights is None and not self.is_rebuild:
            return self.weights_dir
        if not os.path.isfile(os.path.join(out_dir, "config.json")):
            model = self.load()
            model.save_pretrained(out_dir, safe_serialization=True)
            self.load_tokenizer().save_pretrained(out_dir)
        return out_dir


def _load_into_zero3(model, state_dict: dict) -> None:
    """transformers' ZeRO-3 loader (gathers one layer at a time, rank 0 copies, re-partitions);
    every weight must be there, as ``load_state_dict(strict=True)`` demands elsewhere."""
    import warnings

    from transformers.integrations.deepspeed import _load_state_dict_into_zero3_model

    with warnings.catch_warnings():  # the views are read-only; only copies are written
        warnings.simplefilter("ignore", UserWarning)
        errors, missing = _load_state_dict_into_zero3_model(model, state_dict)
    if errors or missing:
        raise RuntimeError(f"loading weights into the ZeRO-3 model failed: {errors or sorted(missing)}")


def _tensor_sums(model) -> list:
    """One float64 sum and absolute sum per tensor: cheap, and any real edit moves one."""
    import torch

    with torch.no_grad():
        return [(name, float(t.double().sum()), float(t.double().abs().sum()))
                for name, t in model.state_dict().items()]
