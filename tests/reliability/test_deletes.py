"""No delete leaves the run's own folders: a copied run folder cleaning up never reaches the
original, and a symlink is removed, never followed (no Ray)."""

from __future__ import annotations

import json
import os
import shutil

from fnsft.pipeline.copies import cleanup_intermediate
from fnsft.pipeline.disk import remove_inside
from fnsft.pipeline.manifest import Manifest


def _model(d):
    os.makedirs(d, exist_ok=True)
    for f in ("config.json", "model.safetensors", "tokenizer.json"):
        (d / f).write_text("{}")
    return str(d)


def test_remove_inside_refuses_a_path_outside_the_root(tmp_path):
    root, other = tmp_path / "run", tmp_path / "elsewhere"
    _model(other / "model")
    os.makedirs(root)
    assert remove_inside(str(other / "model"), str(root)) == 0
    assert remove_inside(str(root / ".." / "elsewhere" / "model"), str(root)) == 0
    assert remove_inside(str(root), str(root)) == 0  # the root itself is not "inside"
    assert len(os.listdir(other / "model")) == 3 and os.path.isdir(root)
    inside = _model(root / "01_sft" / "model")
    assert remove_inside(inside, str(root)) > 0 and not os.path.exists(inside)


def test_a_symlink_is_unlinked_never_followed(tmp_path):
    root, other = tmp_path / "run", tmp_path / "elsewhere"
    target = _model(other / "model")
    os.makedirs(root / "01_sft")
    os.symlink(target, root / "01_sft" / "model")
    remove_inside(str(root / "01_sft" / "model"), str(root))
    assert not os.path.lexists(root / "01_sft" / "model") and len(os.listdir(target)) == 3
    # A folder reached through a linked parent lies outside: refused.
    os.symlink(str(other), root / "linked")
    assert remove_inside(str(root / "linked" / "model"), str(root)) == 0
    assert len(os.listdir(target)) == 3


def test_cleanup_of_a_copied_run_never_touches_the_original(tmp_path):
    """A finished run copied elsewhere and rerun there with --cleanup_intermediate: its summary
    still names the original's 01_sft/model; only the copy's own folders may go."""
    original = tmp_path / "run"
    _model(original / "01_sft" / "model")
    _model(original / "final_model")
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    summary = {"stages": {"sft": {"model_path": str(original / "01_sft" / "model")},
                          "dpo": {"model_path": str(copy / "02_dpo" / "model")}}}
    _model(copy / "02_dpo" / "model")
    manifest = Manifest(str(copy))
    for name, entry in summary["stages"].items():
        manifest.record(name, {"status": "completed", "model_path": entry["model_path"]})
    dirs = {"sft": str(copy / "01_sft"), "dpo": str(copy / "02_dpo")}
    cleanup_intermediate(manifest, summary, dirs, str(copy / "final_model"), str(copy))
    assert len(os.listdir(original / "01_sft" / "model")) == 3  # the original run is intact
    assert not os.path.exists(copy / "02_dpo" / "model")
    assert summary["stages"]["dpo"]["model_path"] is None
    saved = json.loads((copy / ".fnsft_manifest.json").read_text())
    assert saved["stages"]["dpo"]["model_path"] is None
