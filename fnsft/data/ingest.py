"""Read a dataset as a Ray Data stream (YAML ``stage_configs.sft.data_streaming``).

:func:`read_stream` turns a local file, a folder of files or a pyarrow filesystem URI
(``s3://``, ``gs://``: credentials from the nodes' environment) into a lazy
``ray.data.Dataset``: nothing is read until the Train workers iterate their shards, and the
reading runs in Ray Data tasks on the cluster, never in the driver. Format detection and
validation stay on the first rows (:func:`fnsft.data.files.read_first_rows`, no Ray).

JSON Lines (and ``.json`` files) are read as text, one JSON object per row, and parsed by the
batch function (:class:`fnsft.data.tokenize.SFTTokenizeBatch`) with Python's ``json``, as the
in-memory path parses them: pyarrow's JSON reader would unify the rows' schemas (a key missing
in one message becomes ``null``, mixed types fail the whole file). CSV cells stay strings, as
:mod:`fnsft.data.rows` reads them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from fnsft.errors import ConfigError


@dataclass(frozen=True)
class StreamSource:
    """A lazy Ray Data read and how its rows look: ``json_lines``: every row is ``{"text": one
    JSON object}`` to parse; otherwise rows are the file's own columns (CSV, parquet)."""

    dataset: Any  # ray.data.Dataset
    json_lines: bool
    files: tuple[str, ...]


def is_uri(path: str) -> bool:
    """A pyarrow filesystem URI (``s3://bucket/x.jsonl``), read by Ray Data on the nodes."""
    return "://" in path and not path.startswith("file://")


def stream_files(path: str) -> list[str]:
    """The data files behind a local ``path`` (:func:`fnsft.data.files.list_data_files`) or a
    URI (a file, or a folder's data files listed through pyarrow's filesystem)."""
    from fnsft.data.files import DATA_SUFFIXES, list_data_files

    if not is_uri(path):
        return list_data_files(path)
    import pyarrow.fs as pafs

    fs, root = pafs.FileSystem.from_uri(path)
    info = fs.get_file_info(root)
    scheme = path.split("://", 1)[0]
    if info.type == pafs.FileType.Directory:
        found = sorted(i.path for i in fs.get_file_info(pafs.FileSelector(root))
                       if os.path.splitext(i.path)[1].lower() in DATA_SUFFIXES)
        if not found:
            raise ConfigError(f"data folder {path} has no data files; accepted suffixes: {', '.join(DATA_SUFFIXES)}")
        return [f"{scheme}://{p}" for p in found]
    if info.type == pafs.FileType.NotFound:
        raise ConfigError(f"data path {path} does not exist")
    return [path]


def _json_file_rows(item: dict) -> list[dict]:
    """A ``.json`` file's records as ``{"text": <one JSON object>}`` rows: a list of objects,
    ``{"data": [...]}``, or JSON Lines under a .json name (as :func:`fnsft.data.files.json_records`)."""
    text = item["bytes"].decode("utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return [{"text": line, "where": f"{item['path']} line {n}"}
                for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if isinstance(data, dict) and len(data) == 1:
        (data,) = data.values()
    if not isinstance(data, list):
        raise ConfigError(f"data file {item['path']}: expected a list of objects or {{\"data\": [objects...]}}")
    return [{"text": json.dumps(r), "where": f"{item['path']} record {i}"} for i, r in enumerate(data, start=1)]


def _csv_header(file: str) -> list[str]:
    import csv
    import io

    import pyarrow.fs as pafs

    if is_uri(file):
        fs, p = pafs.FileSystem.from_uri(file)
        with fs.open_input_stream(p) as f:
            head = f.read(1 << 20).decode("utf-8", errors="replace")
    else:
        with open(file, encoding="utf-8", newline="") as f:
            head = f.read(1 << 20)
    return next(csv.reader(io.StringIO(head)), [])


# Ray resources of each read task (and of each tokenizer, fnsft.stages.sft_stream): none. Ray
# Train takes the CPUs its workers hold out of Ray Data's budget, and a stage's workers hold all
# of a machine's CPUs by default (cpus_per_worker: auto), so reads asking for a CPU would wait
# forever; the Train workers wait for these rows anyway, so the cores are shared, not contended.
DATA_TASK_CPUS = 0


def read_stream(path: str, max_tasks: int = 2) -> StreamSource:
    """A lazy Ray Data read of every row of ``path`` (one kind of file: jsonl, json, csv or
    parquet), at most ``max_tasks`` read tasks at a time."""
    import ray.data

    files = stream_files(path)
    task = {"num_cpus": DATA_TASK_CPUS, "concurrency": max_tasks}
    suffix = os.path.splitext(files[0])[1].lower()
    if suffix == ".jsonl":
        # include_paths: a bad row's error can name its file, and its line (fnsft.data.tokenize.find_line)
        return StreamSource(ray.data.read_text(files, include_paths=True, **task), True, tuple(files))
    if suffix == ".json":
        ds = ray.data.read_binary_files(files, include_paths=True, **task).flat_map(
            _json_file_rows, num_cpus=DATA_TASK_CPUS)
        return StreamSource(ds, True, tuple(files))
    if suffix == ".csv":
        import pyarrow as pa
        from pyarrow import csv as pacsv

        header = _csv_header(files[0])
        convert = pacsv.ConvertOptions(column_types={name: pa.string() for name in header},
                                       strings_can_be_null=False)
        return StreamSource(ray.data.read_csv(files, convert_options=convert, **task), False, tuple(files))
    return StreamSource(ray.data.read_parquet(files, **task), False, tuple(files))


@dataclass(frozen=True)
class StreamPlan:
    """What a streamed stage's workers need to know about their shards (carried by the
    :class:`~fnsft.runtime.train_job.TrainJob`): the columns TRL trains on, how many training
    rows the stream holds (Ray Data's count less the held-out rows) and the optimizer steps that
    make the stage's epochs (HF needs ``max_steps`` with a set of unknown length)."""

    columns: tuple[str, ...]
    train_rows: int
    max_steps: int
    skip_actor: str = ""  # fnsft.data.stream_skip.SkipRows: a resumed epoch's rows already trained on


@dataclass(frozen=True)
class StreamInput:
    """A streamed stage's data: ``datasets`` (name -> ``ray.data.Dataset``, split between the
    Train workers by Ray Train), the :class:`StreamPlan`, the held-out rows (materialized,
    bounded by ``eval_max_rows``) and the info for the stage's metrics and log."""

    datasets: dict[str, Any]
    plan: StreamPlan
    eval_rows: list[dict]
    info: dict[str, Any]
    actors: tuple = ()  # the stage's helper actors (SkipRows), killed by close()

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)


def steps_for_epochs(rows: int, workers: int, batch: int, grad_accum: int, epochs: float) -> int:
    """Optimizer steps that make ``epochs`` passes over ``rows`` split evenly between ``workers``
    (Ray Train's equal split: each gets ``rows // workers``), ``batch`` rows per micro-batch."""
    import math

    per_worker = max(1, rows // max(1, workers))
    per_epoch = math.ceil(math.ceil(per_worker / batch) / grad_accum)
    return max(1, math.ceil(per_epoch * epochs))
