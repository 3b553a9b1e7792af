"""Run-state files (the manifest, pipeline_summary.json) are written atomically, and a damaged
one stops the run with one line naming it and what to do (no Ray, no training)."""

from __future__ import annotations

import json
import os
import threading

import pytest

from fnsft.errors import ConfigError
from fnsft.pipeline.manifest import Manifest
from fnsft.pipeline.summary import load_summary
from fnsft.utils.atomic import write_json_atomic


def test_concurrent_writers_never_leave_a_torn_file_or_a_temp(tmp_path):
    """Two writers of one file (a Tune trial and its neighbour on a shared folder) each use
    their own temp file: every read sees one whole document, and no temp file is left."""
    path = str(tmp_path / "state.json")
    errors: list[BaseException] = []

    def writer(tag: str) -> None:
        try:
            for i in range(200):
                write_json_atomic(path, {"writer": tag, "i": i, "pad": "x" * 2000})
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(t,)) for t in "ab"]
    for t in threads:
        t.start()
    seen = 0
    while any(t.is_alive() for t in threads):
        with open(path) if os.path.exists(path) else open(os.devnull) as f:
            text = f.read()
        if text:
            assert json.loads(text)["writer"] in "ab"
            seen += 1
    for t in threads:
        t.join()
    assert not errors, errors
    assert os.listdir(tmp_path) == ["state.json"]


@pytest.mark.parametrize("content", ["", "{\"stages\": {", "[1, 2]", "\x00\x01"])
def test_a_damaged_manifest_is_one_line_naming_it(tmp_path, content):
    path = tmp_path / ".fnsft_manifest.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as err:
        Manifest(str(tmp_path))
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "delete it" in msg


def test_a_damaged_summary_is_one_line_naming_it(tmp_path):
    path = tmp_path / "pipeline_summary.json"
    path.write_text('{"stages": {"sft": {"status": "runn')  # cut short by a full disk
    with pytest.raises(ConfigError) as err:
        load_summary(str(tmp_path))
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "delete it" in msg


def test_a_whole_summary_and_manifest_load(tmp_path):
    write_json_atomic(str(tmp_path / "pipeline_summary.json"), {"stages": {"sft": {"status": "completed"}}})
    assert load_summary(str(tmp_path))["stages"]["sft"]["status"] == "completed"
    assert load_summary(str(tmp_path / "new"))["stages"] == {}
    m = Manifest(str(tmp_path))
    m.record("sft", {"status": "completed", "fingerprint": "f"})
    assert Manifest(str(tmp_path)).data["stages"]["sft"]["fingerprint"] == "f"


def test_the_cli_stops_on_a_damaged_manifest_with_one_line_before_ray(tmp_path):
    import yaml

    from fnsft.testing import run_cli, tiny_sft_config

    out = tmp_path / "run"
    out.mkdir()
    (out / ".fnsft_manifest.json").write_text('{"stages": {"sft": {"status": "compl')
    cfg = tmp_path / "pipeline.yaml"
    cfg.write_text(yaml.safe_dump(tiny_sft_config(out)))
    proc = run_cli("--config", str(cfg))
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(err) == 1 and ".fnsft_manifest.json" in err[0] and "delete it" in err[0], err
    assert "RAY_IMPORTED=False" in proc.stdout  # stopped before Ray started
