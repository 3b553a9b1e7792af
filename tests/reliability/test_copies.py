"""Which merged copies a run keeps (fnsft.pipeline.copies) and when the manifest counts a stage
as finished (fnsft.pipeline.manifest), on folders laid out as stages leave them (no Ray)."""

from __future__ import annotations

import os

from fnsft.pipeline.copies import Copies
from fnsft.pipeline.manifest import Manifest


def _model(d):
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, "config.json"), "w").write("{}")
    open(os.path.join(d, "model.safetensors"), "wb").write(b"x" * 1000)
    return str(d)


def _adapter(d):
    os.makedirs(d, exist_ok=True)
    for f in ("adapter_model.safetensors", "adapter_config.json"):
        open(os.path.join(d, f), "w").write("{}")
    return str(d)


def _stage(tmp_path, name, lora=True):
    folder = tmp_path / name
    return str(folder), _model(folder / "model"), (_adapter(folder / "adapter") if lora else None)


def test_earlier_lora_copies_go_once_a_later_stage_has_its_own(tmp_path):
    copies = Copies()
    full_dir, full_model, _ = _stage(tmp_path, "01_full", lora=False)
    a_dir, a_model, a_adapter = _stage(tmp_path, "02_a")
    b_dir, b_model, b_adapter = _stage(tmp_path, "03_b")
    copies.add("full", full_dir, full_model, None, False)
    copies.add("a", a_dir, a_model, a_adapter, False)
    assert copies.drop_unneeded(keep=a_model) == []  # the latest copy stays
    copies.add("pass", str(tmp_path / "04_pass"), a_model, None, True)  # hands a's weights on
    copies.add("b", b_dir, b_model, b_adapter, False)
    assert copies.drop_unneeded(keep=b_model) == [a_model]  # the full fine-tune's copy stays
    assert os.path.isfile(os.path.join(full_model, "config.json")) and not os.path.exists(a_model)
    assert all(link.on_disk for link in copies.chain)  # a and pass: a's adapter over full's copy
    assert copies.drop_unneeded(keep=None) == [b_model]  # final_model holds b


def test_a_copy_whose_input_is_not_on_disk_stays(tmp_path):
    copies = Copies()
    copies.add("custom", str(tmp_path / "01_custom"), None, None, False)  # weights only in memory
    a_dir, a_model, a_adapter = _stage(tmp_path, "02_a")
    copies.add("a", a_dir, a_model, a_adapter, False)
    b_dir, b_model, b_adapter = _stage(tmp_path, "03_b")
    copies.add("b", b_dir, b_model, b_adapter, False)
    assert copies.drop_unneeded(keep=b_model) == []  # a's adapter alone could not rebuild it
    assert copies.drop_unneeded(keep=None) == [b_model]  # a's kept copy + b's adapter rebuild b
    assert os.path.isfile(os.path.join(a_model, "config.json"))


def test_manifest_counts_a_stage_by_copy_final_model_adapter_or_passthrough(tmp_path):
    m = Manifest(str(tmp_path))
    a_dir, a_model, a_adapter = _stage(tmp_path, "01_a")
    m.record("a", {"status": "completed", "fingerprint": "fa", "model_path": a_model, "adapter_path": a_adapter})
    m.record("p", {"status": "completed", "fingerprint": "fp", "model_path": a_model, "passthrough": True})
    assert m.completed("a", "fa") and not m.completed("a", "other")
    assert m.forget_path(a_model) == ["a", "p"]  # the pass-through named the same folder
    os.rename(a_model, a_model + ".gone")
    assert m.completed("a", "fa")  # its adapter over an input read from disk
    assert not m.completed("a", "fa", input_on_disk=False)  # an input trained anew: not that adapter's
    assert m.completed("p", "fp")
    m.record("full", {"status": "completed", "fingerprint": "ff", "model_path": None})
    assert not m.completed("full", "ff")
    final = _model(tmp_path / "final_model")
    m.record_final("ff", final)
    assert m.completed("full", "ff") and Manifest(str(tmp_path)).final_for("ff") == final
