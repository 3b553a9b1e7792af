"""Finding, peeking at and loading dataset files (fnsft.data.files)."""

import csv
import json
from pathlib import Path

import pytest

from fnsft.data.files import is_local_path, list_data_files, load_rows, read_first_rows
from fnsft.errors import ConfigError

ROWS = [{"instruction": f"Say {i}.", "input": "", "output": str(i)} for i in range(7)]
FORMATS_DIR = Path(__file__).resolve().parents[2] / "examples" / "formats"


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_list_data_files_single_file_and_folder(tmp_path):
    a = write_jsonl(tmp_path / "b.jsonl", ROWS[:2])
    b = write_jsonl(tmp_path / "a.jsonl", ROWS[2:])
    (tmp_path / "README.md").write_text("not data")
    (tmp_path / "sub").mkdir()
    write_jsonl(tmp_path / "sub" / "c.jsonl", ROWS)  # not recursive
    assert list_data_files(str(a)) == [str(a)]
    assert list_data_files(str(tmp_path)) == [str(b), str(a)]


def test_list_data_files_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"does not exist.*\.jsonl, \.json, \.csv, \.parquet"):
        list_data_files(str(tmp_path / "missing.jsonl"))
    txt = tmp_path / "data.txt"
    txt.write_text("hello")
    with pytest.raises(ConfigError, match=r"data\.txt has an unsupported suffix; accepted suffixes: \.jsonl"):
        list_data_files(str(txt))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="has no data files"):
        list_data_files(str(empty))
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    write_jsonl(mixed / "a.jsonl", ROWS)
    write_csv(mixed / "b.csv", ROWS)
    with pytest.raises(ConfigError, match="mixes file types"):
        list_data_files(str(mixed))


def test_is_local_path(tmp_path):
    assert is_local_path(str(tmp_path))
    assert is_local_path("./data")
    assert is_local_path("~/data")
    assert is_local_path("/abs/missing")
    assert is_local_path("data/train.jsonl")
    assert is_local_path("train.parquet")
    assert not is_local_path("tatsu-lab/alpaca")
    assert not is_local_path("gsm8k")


def test_read_first_rows_jsonl_reads_only_n(tmp_path):
    path = tmp_path / "d.jsonl"
    # A broken line after the first n rows must not be read.
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS[:3]) + "\n{broken\n", encoding="utf-8")
    assert read_first_rows(str(path), n=3) == ROWS[:3]


def test_read_first_rows_invalid_json_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n\n{\"instruction\": oops}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        read_first_rows(str(path))
    assert f"{path}:3: invalid JSON" in str(err.value)
    assert "\n" not in str(err.value)


def test_read_first_rows_non_object_line(tmp_path):
    path = tmp_path / "list.jsonl"
    path.write_text("[1, 2]\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"list\.jsonl:1: expected a JSON object"):
        read_first_rows(str(path))


def test_read_first_rows_json_list_and_wrapper(tmp_path):
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(ROWS), encoding="utf-8")
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"data": ROWS}), encoding="utf-8")
    assert read_first_rows(str(plain), n=2) == ROWS[:2]
    assert read_first_rows(str(wrapped), n=4) == ROWS[:4]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"a": 1, "b": 2}), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.json: expected a list of objects"):
        read_first_rows(str(bad))


def test_read_first_rows_json_lines_named_json(tmp_path):
    path = write_jsonl(tmp_path / "lines.json", ROWS)
    assert read_first_rows(str(path), n=2) == ROWS[:2]


def test_read_first_rows_csv_and_parquet(tmp_path):
    assert read_first_rows(str(write_csv(tmp_path / "d.csv", ROWS)), n=3) == ROWS[:3]
    assert read_first_rows(str(write_parquet(tmp_path / "d.parquet", ROWS)), n=3) == ROWS[:3]


def test_read_first_rows_folder_spans_files(tmp_path):
    write_jsonl(tmp_path / "1.jsonl", ROWS[:2])
    write_jsonl(tmp_path / "2.jsonl", ROWS[2:])
    assert read_first_rows(str(tmp_path), n=5) == ROWS[:5]


def test_read_first_rows_hub_name_is_empty():
    assert read_first_rows("someone/some-dataset") == []


def test_shipped_alpaca_files_agree():
    rows = read_first_rows(str(FORMATS_DIR / "alpaca.jsonl"), n=100)
    assert len(rows) >= 6
    assert read_first_rows(str(FORMATS_DIR / "alpaca.csv"), n=100) == rows
    assert read_first_rows(str(FORMATS_DIR / "alpaca.parquet"), n=100) == rows


@pytest.mark.parametrize("suffix", ["jsonl", "json", "csv", "parquet"])
def test_load_rows_local(tmp_path, suffix):
    path = tmp_path / f"d.{suffix}"
    if suffix == "jsonl":
        write_jsonl(path, ROWS)
    elif suffix == "json":
        path.write_text(json.dumps({"data": ROWS}), encoding="utf-8")
    elif suffix == "csv":
        write_csv(path, ROWS)
    else:
        write_parquet(path, ROWS)
    ds = load_rows(str(path))
    assert len(ds) == len(ROWS)
    assert ds[3] == ROWS[3]


def test_load_rows_folder(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", ROWS[:3])
    write_jsonl(tmp_path / "b.jsonl", ROWS[3:])
    ds = load_rows(str(tmp_path))
    assert [r["output"] for r in ds] == [r["output"] for r in ROWS]


def test_load_rows_invalid_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\nnot json\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.jsonl:2: invalid JSON"):
        load_rows(str(path))
