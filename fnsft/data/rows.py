"""Read every row of a dataset, each with its place in the file, so that a bad row deep in a big
file stops the stage with one line naming the file and line (YAML ``skip_bad_rows``).

A row is bad when it cannot be read (broken JSON, bytes that are not UTF-8, nesting deeper than
the JSON parser goes, a CSV record with a runaway quote or more cells than the header) or when
the stage cannot convert it (a wrong type, a missing column: the stage's ``convert`` raises a
``ConfigError``). The first bad row raises a ``ConfigError`` naming ``<file> line N`` (JSON
Lines, CSV: the line the record starts on), ``<file> record N`` (a .json list), ``<file> row N``
(parquet, a hub set; 1-based), never a traceback. With ``skip_bad_rows: true`` bad rows are
skipped and counted (:class:`RowReport`), and the first few reasons kept for the log and summary.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Union

from fnsft.data.files import is_local_path, json_records, list_data_files
from fnsft.errors import ConfigError

# Longest CSV cell accepted (characters). Python's csv default is 128 KiB; a long document can
# exceed that, but a cell past 16 MiB is a runaway quote swallowing the rest of the file.
CSV_CELL_LIMIT = 16 * 2**20
# Reasons kept (and shown) when bad rows are skipped.
KEPT_REASONS = 3


class _Bad(str):
    """A reading problem in place of a row (the whole message, naming the file and line)."""


@dataclass
class RowReport:
    """How many rows were read, how many were bad and skipped, and the first reasons why."""

    rows: int = 0
    skipped: int = 0
    reasons: list[str] = field(default_factory=list)

    def add(self, other: "RowReport") -> "RowReport":
        return RowReport(self.rows + other.rows, self.skipped + other.skipped,
                         (self.reasons + other.reasons)[:KEPT_REASONS])

    def describe(self) -> str:
        """One line for the log: ``skipped 2 bad rows of 20000 (x.jsonl line 7: invalid JSON ...; ...)``."""
        return f"skipped {self.skipped} bad row(s) of {self.rows + self.skipped} ({' | '.join(self.reasons)})"


def _decoded_lines(path: str) -> Iterator[tuple[int, Union[str, _Bad]]]:
    """``(line number, text)`` of a text file, a :class:`_Bad` for a line that is not UTF-8."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield lineno, _Bad(f"data file {path} line {lineno}: not UTF-8 text (byte 0x{raw[e.start]:02x} "
                                   f"at column {e.start + 1}); save the file as UTF-8")


def _jsonl(path: str) -> Iterator[tuple[str, Union[dict, _Bad]]]:
    for lineno, line in _decoded_lines(path):
        where = f"{path} line {lineno}"
        if isinstance(line, _Bad):
            yield where, line
            continue
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            yield where, _Bad(f"data file {where}: invalid JSON ({e.msg} at column {e.pos + 1}); "
                              "each line must be one JSON object")
            continue
        except RecursionError:
            yield where, _Bad(f"data file {where}: JSON nested too deeply to read")
            continue
        if not isinstance(row, dict):
            yield where, _Bad(f"data file {where}: expected a JSON object per line, got {type(row).__name__}")
            continue
        yield where, row


def _csv(path: str) -> Iterator[tuple[str, Union[dict, _Bad]]]:
    csv.field_size_limit(CSV_CELL_LIMIT)
    not_utf8: list[_Bad] = []

    def text() -> Iterator[str]:
        for _, line in _decoded_lines(path):
            if isinstance(line, _Bad):
                not_utf8.append(line)
                line = "\n"  # an empty record in its place: reported below, the reader goes on
            yield line

    reader = csv.reader(text())
    header: Optional[list[str]] = None
    while True:
        start = reader.line_num + 1
        where = f"{path} line {start}"
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            yield where, _Bad(f"data file {where}: unreadable CSV record ({e}; an unclosed quote makes one cell "
                              "of the rest of the file)")
            return  # the reader cannot find the next record after this
        if not_utf8:
            yield where, not_utf8.pop()
            continue
        if header is None:
            header = cells
            continue
        if not cells:
            continue
        if len(cells) != len(header):
            yield where, _Bad(f"data file {where}: {len(cells)} cells, the header has {len(header)}")
            continue
        yield where, dict(zip(header, cells))


def _json_list(path: str) -> Iterator[tuple[str, Union[dict, _Bad]]]:
    records = json_records(path)
    if records is None:  # JSON Lines under a .json name
        yield from _jsonl(path)
        return
    for i, row in enumerate(records, start=1):
        yield f"{path} record {i}", row


def _parquet(path: str) -> Iterator[tuple[str, Union[dict, _Bad]]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid and friends
        raise ConfigError(f"data file {path}: not a readable parquet file ({e})") from None
    n = 0
    for batch in pf.iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            n += 1
            yield f"{path} row {n}", row


_ITER = {".jsonl": _jsonl, ".json": _json_list, ".csv": _csv, ".parquet": _parquet}


def iter_records(path: str) -> Iterator[tuple[str, Any]]:
    """``(where, row)`` for every row of a local file/folder or hub set, in order; where a row
    cannot be read, a problem string (a :class:`_Bad`) in its place."""
    if not is_local_path(path):
        from fnsft.data.files import load_rows

        for i, row in enumerate(load_rows(path), start=1):
            yield f"{path} row {i}", row
        return
    for file in list_data_files(path):
        yield from _ITER[os.path.splitext(file)[1].lower()](file)


def read_rows(path: str, convert: Optional[Callable[[dict, str], Any]] = None, *, skip_bad_rows: bool = False,
              key: str = "", limit: Optional[int] = None) -> tuple[list, RowReport]:
    """Every row of ``path``, each passed through ``convert(row, where)`` when given (which raises
    a ``ConfigError`` for a row it cannot use), and the :class:`RowReport`.

    The first bad row raises a one-line ``ConfigError`` naming its file and line (and
    ``<key>.skip_bad_rows``), unless ``skip_bad_rows``. ``limit``: stop after that many good rows.
    """
    out: list = []
    report = RowReport()
    for where, row in iter_records(path):
        if isinstance(row, _Bad):
            problem = str(row)
        else:
            try:
                out.append(convert(row, where) if convert else row)
                report.rows += 1
                if limit is not None and report.rows >= limit:
                    break
                continue
            except ConfigError as e:
                problem = str(e)
            except RecursionError:  # a converter walking an absurdly nested value
                problem = f"data file {where}: a value nested too deeply to convert"
        if not skip_bad_rows:
            hint = f"; fix or remove it, or set {key}.skip_bad_rows: true to skip such rows" if key else ""
            raise ConfigError(problem + hint)
        report.skipped += 1
        if len(report.reasons) < KEPT_REASONS:
            report.reasons.append(problem)
    return out, report



def first_rows(path: str, n: int = 20) -> list[dict]:
    """The first ``n`` readable rows of ``path`` (bad ones passed over), for format detection;
    unlike :func:`fnsft.data.files.read_first_rows` it also reads a hub set."""
    from itertools import islice

    return list(islice((row for _, row in iter_records(path) if not isinstance(row, _Bad)), n))
