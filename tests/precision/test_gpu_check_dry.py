"""``scripts/gpu_check.sh --dry``: the GPU check's driver runs on CPU with the tiny model."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

from fnsft.testing import REPO


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", os.path.join(REPO, "scripts", "gpu_check.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_unknown_run_name_is_one_line_error(capsys):
    assert _gpu_check().main(["--dry", "--only", "sft_lora,nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "nope" in err and "sft_lora" in err


@pytest.mark.slow
@pytest.mark.long  # the script itself runs on a GPU machine (scripts/gpu_check.sh)
def test_dry_run_prints_json_with_movement(ray_session, capsys, tmp_path):
    out = tmp_path / "check.json"
    rc = _gpu_check().main(["--dry", "--only", "sft_full,ppo", "--out", str(out)])
    doc = json.loads(out.read_text())
    assert rc == 0, doc
    assert doc["dry"] and doc["model"] == "builtin:tiny-llama" and set(doc["runs"]) == {"sft_full", "ppo"}
    sft, ppo = doc["runs"]["sft_full"], doc["runs"]["ppo"]
    assert sft["status"] == ppo["status"] == "ok"
    assert sft["eval_loss"] < sft["before_eval_loss"] and sft["train_tokens_per_s"] > 0
    assert {"reward_start", "reward_end", "generated_tokens_per_s"} <= set(ppo)
    assert "peak_gpu_memory_mib" in sft and sft["wall_s"] > 0
    stdout = capsys.readouterr().out  # the pipeline's log lines, then the JSON document
    start = 0 if stdout.startswith("{") else stdout.rindex("\n{\n") + 1
    assert json.loads(stdout[start:]) == doc
