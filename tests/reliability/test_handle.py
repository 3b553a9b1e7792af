"""A ModelHandle is the model for a user's stage, and stays a light handle everywhere else."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import torch

from fnsft.models.handle import ModelHandle


def test_handle_loads_on_first_model_attribute_only(tiny_model_dir):
    h = ModelHandle(source=tiny_model_dir)
    # Fields, private names, pickling and copies never load the model (built-in stages' paths).
    assert h.source == tiny_model_dir and h.weights is None and not h.is_loaded
    assert not hasattr(h, "__ray_actor_class__") and not h.is_loaded
    for clone in (pickle.loads(pickle.dumps(h)), copy.copy(h), dataclasses.replace(h, path="x")):
        assert isinstance(clone, ModelHandle) and not clone.is_loaded
    # Ordinary model methods work on the handle itself.
    n = sum(p.numel() for p in h.parameters())
    assert h.is_loaded and n > 0 and not h.changed_in_place()
    ids = torch.tensor([[1, 2, 3]])
    assert h(input_ids=ids).logits.shape[:2] == (1, 3)  # model(**batch)
    assert h.generate(input_ids=ids, max_new_tokens=2, do_sample=False).shape == (1, 5)
    assert h.loaded_model() is h.loaded_model()  # loaded once
    # A loaded handle pickles (into a Train job) without its model; an in-place edit is seen.
    assert not pickle.loads(pickle.dumps(h)).is_loaded
    with torch.no_grad():
        h.model.layers[0].mlp.down_proj.weight.mul_(2)
    assert h.changed_in_place()
    assert not dataclasses.replace(h).is_loaded  # what the pipeline hands on is a fresh handle
