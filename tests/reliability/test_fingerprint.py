"""The stage fingerprint covers the contents of the local files and folders a stage reads."""

from __future__ import annotations

import os

from fnsft.pipeline.manifest import config_paths, paths_fingerprint, stage_fingerprint
from fnsft.pipeline.plan import build_plan
from fnsft.testing import EXAMPLES, TINY


def _fp(tmp_path, data):
    plan = build_plan(data={"model_name_or_path": TINY, "output_dir": str(tmp_path / "o"), "stages": ["sft"],
                            "stage_configs": {"sft": {"dataset_name_or_path": str(data)}}})
    return stage_fingerprint("sft", plan.stages[0].stage, "base")


def test_edited_data_changes_the_fingerprint_same_path(tmp_path):
    data = tmp_path / "d.jsonl"
    rows = open(os.path.join(EXAMPLES, "sample_data.jsonl")).read().splitlines()
    data.write_text("\n".join(rows[:20]) + "\n")
    first = _fp(tmp_path, data)
    assert _fp(tmp_path, data) == first  # stable
    stat = os.stat(data)
    data.write_text("\n".join(rows[1:21]) + "\n")  # same size class, different rows ...
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ... and even the old mtime
    assert _fp(tmp_path, data) != first


def test_folders_and_nested_values(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    before = paths_fingerprint([str(model)])
    (model / "model.safetensors").write_bytes(b"x" * 10)
    assert paths_fingerprint([str(model)]) != before
    found = config_paths({"rewards": [{"path": str(model)}], "name": "not/a/path", "n": 3})
    assert found == [str(model)]
    assert paths_fingerprint(["hub/model-id"]) == ""
