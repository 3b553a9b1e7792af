"""A bad row deep in a file stops with one line naming the file and its line, or, with
``skip_bad_rows: true``, is skipped and counted (no Ray)."""

from __future__ import annotations

import json
import os

import pytest

from fnsft.data.rows import read_rows
from fnsft.errors import ConfigError
from fnsft.pipeline.plan import build_plan
from fnsft.testing import run_cli, tiny_sft_config

LINE = 4000  # the bad row's line: far past the rows format detection reads
GOOD = json.dumps({"instruction": "Say hi.", "output": "hi"}).encode() + b"\n"
BAD_LINES = {
    "broken_json": (b'{"instruction": "Say hi.", "output": \n', "invalid JSON"),
    "not_utf8": (b'{"instruction": "\xff\xfe", "output": "hi"}\n', "not UTF-8 text"),
    "absurd_nesting": (b"[" * 200_000 + b"]" * 200_000 + b"\n", "nested too deeply"),
    "not_an_object": (b"[1, 2]\n", "expected a JSON object per line, got list"),
}


def _jsonl(path, bad: bytes, n: int = 5000):
    with open(path, "wb") as f:
        for i in range(1, n + 1):
            f.write(bad if i == LINE else GOOD)
    return str(path)


@pytest.mark.parametrize("kind", BAD_LINES)
def test_bad_jsonl_row_names_its_line(tmp_path, kind):
    bad, what = BAD_LINES[kind]
    path = _jsonl(tmp_path / "d.jsonl", bad)
    with pytest.raises(ConfigError) as e:
        read_rows(path, key="stage_configs.sft")
    line = str(e.value)
    assert f"{path} line {LINE}:" in line and what in line and "\n" not in line
    assert "stage_configs.sft.skip_bad_rows: true" in line
    rows, report = read_rows(path, skip_bad_rows=True)
    assert len(rows) == 4999 and report.skipped == 1 and f"line {LINE}" in report.describe()


def test_bad_csv_records_name_their_line(tmp_path, monkeypatch):
    import fnsft.data.rows as rows_mod

    path = tmp_path / "d.csv"
    lines = [b"instruction,output\n"] + [b"Say hi.,hi\n"] * 5000
    lines[LINE - 1] = b"Say hi.,hi,one cell too many\n"
    lines[LINE + 99] = b"\xff,hi\n"
    path.write_bytes(b"".join(lines))
    with pytest.raises(ConfigError, match=f"line {LINE}: 3 cells, the header has 2"):
        read_rows(str(path))
    rows, report = read_rows(str(path), skip_bad_rows=True)
    assert len(rows) == 4998 and report.skipped == 2 and f"line {LINE + 100}: not UTF-8" in report.describe()
    # A huge cell (here past a lowered limit; an unclosed quote makes one of the rest of the file).
    monkeypatch.setattr(rows_mod, "CSV_CELL_LIMIT", 1000)
    lines[LINE + 99] = b'"' + b"x" * 5000 + b'",hi\n'
    path.write_bytes(b"".join(lines[:LINE - 1] + lines[LINE:]))
    with pytest.raises(ConfigError, match=f"line {LINE + 99}: unreadable CSV record .*field larger than field limit"):
        read_rows(str(path))


@pytest.fixture(scope="module")
def tokenizer():
    from fnsft.models.builtin import materialize_builtin
    from fnsft.models.loading import load_tokenizer

    return load_tokenizer(materialize_builtin("builtin:tiny-llama"))


def test_sft_wrong_type_deep_in_the_file(tmp_path, tokenizer):
    path = _jsonl(tmp_path / "d.jsonl", json.dumps({"instruction": "Say hi.", "output": 5}).encode() + b"\n")
    stage = build_plan(data=tiny_sft_config(tmp_path / "o", dataset_name_or_path=path)).stages[0].stage
    with pytest.raises(ConfigError) as e:
        stage.prepare_data(tokenizer)
    assert f"{path} line {LINE}: output must be a string" in str(e.value)
    skipping = build_plan(data=tiny_sft_config(tmp_path / "o2", dataset_name_or_path=path,
                                               skip_bad_rows=True)).stages[0].stage
    data, info = skipping.prepare_data(tokenizer)
    assert info["skipped_rows"] == 1 and len(data["train"]) + len(data["eval"]) == 4999


def test_dpo_bad_row_is_one_line_before_ray(tmp_path):
    """DPO reads its pairs while validating: the CLI prints the one line, exit 2, Ray never imported."""
    import yaml

    src = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "formats", "pref_explicit.jsonl")
    pair = open(src, "rb").readline()
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(pair * (LINE - 1) + b'{"prompt": "x", "chosen": \n' + pair * 10)
    cfg = {"model_name_or_path": "builtin:tiny-llama", "output_dir": str(tmp_path / "out"), "stages": ["dpo"],
           "stage_configs": {"dpo": {"preference_dataset_path": str(path)}}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(cfg))
    for extra in ([], ["--dry_run"]):
        r = run_cli("--config", str(tmp_path / "p.yaml"), *extra)
        assert r.returncode == 2, r.stderr[-2000:]
        err = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(err) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
        assert f"{path} line {LINE}: invalid JSON" in err[0] and "skip_bad_rows" in err[0]
        assert "RAY_IMPORTED=False" in r.stdout


def test_local_files_are_read_offline(tmp_path):
    """Local data never goes near the hub: no network call, and neither ``datasets`` nor
    ``huggingface_hub`` is imported to read it."""
    import subprocess
    import sys

    from fnsft.testing import REPO

    path = _jsonl(tmp_path / "d.jsonl", GOOD, n=50)
    code = (
        "import socket, sys\n"
        "def refuse(*a, **k): raise OSError('network used')\n"
        "socket.socket.connect = refuse; socket.create_connection = refuse\n"
        "from fnsft.data.rows import read_rows\n"
        f"rows, report = read_rows({path!r})\n"
        "assert len(rows) == 50, len(rows)\n"
        "print(sorted(m for m in ('datasets', 'huggingface_hub') if m in sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": REPO}, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[]"


def test_rl_prompts_bad_row_names_its_line(tmp_path):
    """The RL (and RLAIF) stage reads its prompts through the same reader."""
    good = json.dumps({"prompt": "What is 2 + 2?", "answer": "4"}).encode() + b"\n"
    path = tmp_path / "prompts.jsonl"
    path.write_bytes(good * (LINE - 1) + json.dumps({"prompt": 7, "answer": "4"}).encode() + b"\n" + good * 10)

    def stage(**rl):
        cfg = {"model_name_or_path": "builtin:tiny-llama", "output_dir": str(tmp_path / "o"), "stages": ["rl"],
               "stage_configs": {"rl": {"dataset_name_or_path": str(path), "eval_split": 0.1,
                                        "rewards": [{"type": "exact_match", "column": "answer"}], **rl}}}
        return build_plan(data=cfg).stages[0].stage

    with pytest.raises(ConfigError, match=f"{path} line {LINE}: prompt must be a string or a list of messages, "
                                          "got int.*stage_configs.rl.skip_bad_rows"):
        stage().prompt_splits()
    splits = stage(skip_bad_rows=True).prompt_splits()
    assert len(splits["train"]) + len(splits["eval"]) == LINE - 1 + 10 and len(splits["eval"]) == 256
