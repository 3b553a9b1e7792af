"""The SFT stage's streaming data path on the driver (YAML ``stage_configs.sft.data_streaming``).

With ``data_streaming: true`` the training rows never pass through the driver: Ray Data reads
the files (:func:`fnsft.data.ingest.read_stream`), converts and tokenizes them in Ray Data
workers (:class:`fnsft.data.tokenize.SFTTokenizeBatch`), and Ray Train hands each Train worker
its own shard (:mod:`fnsft.workers.hf.stream`). The driver reads only what it must:

- the first rows, to detect the format and validate (as without streaming);
- the held-out rows: the **first** rows of the data (at most ``eval_max_rows``), materialized
  once and left out of the training stream by their token ids (``row_id``);
- a row count, only when the stage trains for epochs (HF needs ``max_steps`` for a stream):
  without ``max_steps`` Ray Data counts the rows (parquet: from the files' metadata; JSON Lines
  and CSV: one reading pass without tokenization).

What streaming does not do yet is refused by :func:`check_streaming` with one line each.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fnsft.errors import ConfigError

log = logging.getLogger("fnsft")

# Rows per tokenization batch in Ray Data (one pyarrow block handed to the batch function).
TOKENIZE_BATCH_ROWS = 256


def check_streaming(c, key: str) -> None:
    """Refuse, before Ray starts, the options the streaming path does not support (yet)."""
    from fnsft.data.files import is_local_path
    from fnsft.data.ingest import is_uri
    from fnsft.data.procedural import is_procedural

    why = "data_streaming: true"
    path = c.dataset_name_or_path
    if is_procedural(path) or not (is_uri(path) or is_local_path(path)):
        raise ConfigError(f"{key}.dataset_name_or_path: {why} reads local files and folders or pyarrow URIs "
                          f"(s3://, gs://), not hub or generated sets ({path}); set data_streaming: false")
    if c.skip_bad_rows:
        raise ConfigError(f"{key}.skip_bad_rows: not built with {why} (a bad row stops the stage); "
                          "set skip_bad_rows: false or data_streaming: false")
    if c.eval_max_rows is None and (c.eval_split or c.eval_dataset_path):
        raise ConfigError(f"{key}.eval_max_rows: null (no cap) is refused with {why}: the held-out rows are "
                          "held in memory; give a number of rows")
    if c.packing:
        raise ConfigError(f"{key}.packing: not built with {why}; set packing: false or data_streaming: false")
    if c.train_sampling_strategy not in (None, "random"):
        raise ConfigError(f"{key}.train_sampling_strategy: {c.train_sampling_strategy} needs the whole set; with "
                          f"{why} rows arrive in stream order (accepted: random, or leave it out)")


def _format(stage, path: str, key: str, source) -> str:
    """The format of ``path``: from its first rows (local files, already validated), or read
    through Ray Data for a URI whose ``dataset_format`` is ``auto``."""
    import json

    from fnsft.data.formats import detect_sft_format

    c = stage.config
    fmt = stage.format_of(path, key)
    if fmt != "auto":
        return fmt
    rows = source.dataset.take(20)
    rows = [json.loads(r["text"]) for r in rows] if source.json_lines else rows
    return detect_sft_format(rows, path, c.column_mapping or None)


def _reader(stage, model, path: str, key: str):
    """``path`` as a lazy Ray Data read, and the batch function's arguments for it."""
    from fnsft.data.ingest import read_stream

    c = stage.config
    source = read_stream(path, max_tasks=max(2, stage.resources()[0].num_workers))
    kwargs = dict(fmt=_format(stage, path, key, source), max_length=c.max_length, source=path,
                  column_mapping=c.column_mapping or None, system_prompt=c.system_prompt,
                  as_chat=c.apply_chat_template, chat_template=c.chat_template,
                  trust_remote_code=getattr(model, "trust_remote_code", False), json_lines=source.json_lines)
    return source, kwargs


def _held_out(c, ds, tokenize) -> tuple[list[dict], str, Any]:
    """The first rows of ``ds`` held out (tokenized by ``tokenize``), the log's why, and the
    row count of ``ds`` when it was needed (None otherwise)."""
    from fnsft.data.splits import held_out_count

    where = "the first rows of the data (data_streaming)"
    if c.max_steps <= 0:  # epochs: the steps need the row count anyway
        n = ds.count()
        k, reason = held_out_count(n, c.eval_split, c.eval_max_rows)
        return (tokenize(ds.take(k)) if k else []), f"{reason}; {where}", n
    if not c.eval_split:
        return [], "eval_split: 0, no held-out rows", None
    # With max_steps no full count: the cap binds once the data has eval_max_rows / eval_split rows.
    probe = math.ceil(c.eval_max_rows / c.eval_split)
    seen = ds.limit(probe).count()
    if seen < probe:  # a small set, counted exactly
        k, reason = held_out_count(seen, c.eval_split, c.eval_max_rows)
    else:
        k, reason = c.eval_max_rows, (f"{c.eval_max_rows} rows held out: eval_split {c.eval_split:g} of at least "
                                      f"{probe} rows, capped by eval_max_rows: {c.eval_max_rows}")
    return (tokenize(ds.take(k)) if k else []), f"{reason}; {where}", (seen if seen < probe else None)


def prepare_sft_stream(stage, model, num_workers: int):
    """The streamed SFT stage's :class:`~fnsft.data.ingest.StreamInput`: the lazy training
    stream (read + tokenize, held-out rows left out), the held-out rows, the steps."""
    from ray.data import ActorPoolStrategy

    from fnsft.data.ingest import DATA_TASK_CPUS, StreamInput, StreamPlan, steps_for_epochs
    from fnsft.data.labels import describe_format
    from fnsft.data.stream_skip import start_skip_rows
    from fnsft.data.tokenize import SFTTokenizeBatch

    c = stage.config
    key = f"{stage.key}.dataset_name_or_path"
    source, kwargs = _reader(stage, model, c.dataset_name_or_path, key)
    ds = source.dataset.limit(c.max_train_samples) if c.max_train_samples else source.dataset
    if c.eval_dataset_path:
        eval_source, eval_kwargs = _reader(stage, model, c.eval_dataset_path, f"{stage.key}.eval_dataset_path")
        eval_rows = SFTTokenizeBatch(model.source, **eval_kwargs).rows(eval_source.dataset.take(c.eval_max_rows))
        reason = f"the first {len(eval_rows)} rows of {c.eval_dataset_path} (at most eval_max_rows: {c.eval_max_rows})"
        n = ds.count() if c.max_steps <= 0 else None
    else:
        eval_rows, reason, n = _held_out(c, ds, SFTTokenizeBatch(model.source, **kwargs).rows)
    log.info("[sft] eval: %s", reason)
    # Rows split off this data are left out of the training stream (an eval file's are not).
    held = [] if c.eval_dataset_path else [r["row_id"] for r in eval_rows]
    skip_actor, skip_name = start_skip_rows(stage.stage_name)  # a resumed epoch's trained rows (mid-epoch resume)
    # A callable class: each Ray Data worker loads the tokenizer once, then tokenizes batch after batch.
    train = ds.map_batches(SFTTokenizeBatch, fn_constructor_args=(model.source,),
                           fn_constructor_kwargs={**kwargs, "exclude": held, "skip_from": skip_name},
                           batch_format="pyarrow",
                           batch_size=TOKENIZE_BATCH_ROWS, compute=ActorPoolStrategy(min_size=1, max_size=num_workers),
                           num_cpus=DATA_TASK_CPUS)
    train = train.randomize_block_order(seed=c.seed)
    train_rows = -1 if n is None else n - len(eval_rows)
    steps = c.max_steps if c.max_steps > 0 else steps_for_epochs(
        train_rows, num_workers, c.per_device_train_batch_size, c.gradient_accumulation_steps, c.num_train_epochs)
    columns = ("input_ids",) if kwargs["fmt"] == "text" else ("input_ids", "completion_mask")
    log.info("[sft] %s: format %s, streamed through Ray Data (%s training rows, %d steps)", c.dataset_name_or_path,
             describe_format(kwargs["fmt"]), "uncounted" if n is None else train_rows, steps)
    eval_cols = [{k: r[k] for k in columns} for r in eval_rows]
    info = {"dataset_format": kwargs["fmt"], "eval_rows": len(eval_rows), "skipped_rows": 0,
            "data_streaming": True, **({"train_rows": train_rows} if n is not None else {})}
    return StreamInput({"train": train}, StreamPlan(columns, train_rows, steps, skip_name), eval_cols, info,
                       actors=(skip_actor,))
