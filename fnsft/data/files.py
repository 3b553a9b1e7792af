"""Find, peek at and load dataset files.

A dataset spec (the ``dataset`` YAML key) is either a local path (one file or a folder of
files) or a ``datasets`` hub name. Detection works on a few rows read cheaply with the
standard library (and pyarrow for parquet), so a bad file fails before Ray or a model starts.
"""

from __future__ import annotations

import csv
import json
import os
from itertools import islice
from typing import TYPE_CHECKING, Any, Optional

from fnsft.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import datasets

# suffix -> the `datasets` builder that reads it
DATA_SUFFIXES = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
_ACCEPTED = ", ".join(DATA_SUFFIXES)


def _suffix(path: str) -> str:
    return os.path.splitext(path)[1].lower()


def list_data_files(path: str) -> list[str]:
    """The data files behind ``path``: the file itself, or the data files in a folder (sorted)."""
    full = os.path.expanduser(path)
    if not os.path.exists(full):
        raise ConfigError(f"data path {path} does not exist; give a file ({_ACCEPTED}) or a folder of such files")
    if os.path.isdir(full):
        files = sorted(
            os.path.join(full, name)
            for name in os.listdir(full)
            if _suffix(name) in DATA_SUFFIXES and os.path.isfile(os.path.join(full, name))
        )
        if not files:
            raise ConfigError(f"data folder {path} has no data files; accepted suffixes: {_ACCEPTED}")
        builders = {DATA_SUFFIXES[_suffix(f)] for f in files}
        if len(builders) > 1:
            kinds = ", ".join(sorted({_suffix(f) for f in files}))
            raise ConfigError(
                f"data folder {path} mixes file types ({kinds}); keep one kind per folder (json/jsonl, csv or parquet)"
            )
        return files
    if _suffix(full) not in DATA_SUFFIXES:
        raise ConfigError(f"data file {path} has an unsupported suffix; accepted suffixes: {_ACCEPTED}")
    return [full]


def is_local_path(spec: str) -> bool:
    """True when ``spec`` names a local file or folder rather than a ``datasets`` hub name."""
    return (
        os.path.exists(os.path.expanduser(spec))
        or spec.startswith((".", "/", "~"))
        or _suffix(spec) in DATA_SUFFIXES
    )


def _read_jsonl(path: str, n: int) -> list[dict]:
    rows: list[dict] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if len(rows) >= n:
                break
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}:{lineno}: invalid JSON ({e.msg}); each line must be one JSON object") from None
            if not isinstance(row, dict):
                raise ConfigError(
                    f"{path}:{lineno}: expected a JSON object per line, got {type(row).__name__}"
                )
            rows.append(row)
    return rows


def _json_records(path: str) -> list[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"{path}:{e.lineno}: invalid JSON ({e.msg}); a .json file must hold a list of objects "
            "(use .jsonl for one object per line)"
        ) from None
    if isinstance(data, dict) and len(data) == 1:
        (data,) = data.values()  # {"data": [...]}-style wrapper
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ConfigError(
            f"data file {path}: expected a list of objects or {{\"data\": [objects...]}}; use .jsonl for one object per line"
        )
    return data


def json_records(path: str) -> Optional[list[dict]]:
    """The records of a .json file (a list of objects or ``{"data": [...]}``); None when the file
    is JSON Lines under a .json name (``datasets`` reads both)."""
    try:
        return _json_records(path)
    except ConfigError:
        with open(path, encoding="utf-8", errors="replace") as f:
            first = f.readline()
            second = f.readline()
        if second.strip() and first.strip().startswith("{"):
            return None
        raise
    except UnicodeDecodeError as e:
        raise ConfigError(f"data file {path}: not UTF-8 text (at byte {e.start}); save the file as UTF-8") from None


def _read_json(path: str, n: int) -> list[dict]:
    records = json_records(path)
    return _read_jsonl(path, n) if records is None else records[:n]


def _read_csv(path: str, n: int) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return [dict(r) for r in islice(csv.DictReader(f), n)]


def _read_parquet(path: str, n: int) -> list[dict]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid and friends
        raise ConfigError(f"data file {path}: not a readable parquet file ({e})") from None
    rows: list[dict] = []
    for batch in pf.iter_batches(batch_size=max(n, 1)):
        rows.extend(batch.to_pylist())
        if len(rows) >= n:
            break
    return rows[:n]


_READERS = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv, ".parquet": _read_parquet}


def read_first_rows(path: str, n: int = 5) -> list[dict[str, Any]]:
    """The first ``n`` records of a local file or folder; ``[]`` for a hub name (not readable offline)."""
    from fnsft.data.procedural import is_procedural, procedural_rows

    if is_procedural(path):  # reasoning_gym:<task>, generated here
        return procedural_rows(path, limit=n)
    if not is_local_path(path):
        return []
    rows: list[dict] = []
    for file in list_data_files(path):
        rows.extend(_READERS[_suffix(file)](file, n - len(rows)))
        if len(rows) >= n:
            break
    return rows


def load_rows(path: str) -> "datasets.Dataset":
    """The whole dataset as a ``datasets.Dataset`` (split ``train``), local or from the hub."""
    import datasets

    from fnsft.data.procedural import is_procedural, procedural_rows

    if is_procedural(path):
        return datasets.Dataset.from_list(procedural_rows(path))
    if not is_local_path(path):
        try:
            return datasets.load_dataset(path, split="train")
        except Exception as e:
            raise ConfigError(
                f"dataset {path}: not a local path and could not be loaded from the hub "
                f"({type(e).__name__}: {_first_line(e)}); give a local file ({_ACCEPTED}) or folder instead"
            ) from None
    files = list_data_files(path)
    builder = DATA_SUFFIXES[_suffix(files[0])]
    if any(_suffix(f) == ".json" for f in files):
        # ``datasets`` cannot read {"data": [...]} wrappers; .json files are small, use our reader.
        return datasets.Dataset.from_list([r for f in files for r in _READERS[_suffix(f)](f, _ALL)])
    # CSV cells are text: keep "" and "42" as strings, as read_first_rows sees them (pandas
    # would turn them into NaN/None and ints, which breaks the formats' type checks).
    extra = {}
    if builder == "csv":
        with open(files[0], encoding="utf-8", newline="") as f:
            header = next(csv.reader(f), [])
        extra = {
            "features": datasets.Features({name: datasets.Value("string") for name in header}),
            "keep_default_na": False,
        }
    try:
        return datasets.load_dataset(builder, data_files=files, split="train", **extra)
    except Exception as e:
        if builder == "json":
            for f in files:  # point at the bad line when there is one
                _read_jsonl(f, n=_ALL)
        raise ConfigError(
            f"data {path}: could not load it as {builder} ({type(e).__name__}: {_first_line(e)}); "
            "every row must have the same columns with the same types"
        ) from None


_ALL = 2**62


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""
