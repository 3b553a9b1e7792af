"""Read W&B offline run files (``<WANDB_DIR>/wandb/offline-run-*/run-<id>.wandb``) back in tests.

The file is W&B's transaction log: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then
LevelDB-log framed records in 32 KiB blocks (checksum u32, length u16, type u8: 1 full, 2 first,
3 middle, 4 last), each payload a ``wandb_internal_pb2.Record``. wandb 0.31 no longer ships a
Python reader (``wandb sync`` is in its Go core), so this is the format, read directly.
"""

from __future__ import annotations

import glob
import json
import os
import struct

BLOCK = 32768
HEADER = 7


def records(path: str):
    from wandb.proto import wandb_internal_pb2 as pb

    data = open(path, "rb").read()
    assert data[:4] == b":W&B", path
    pos, pending = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # the block's tail is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        chunk = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(pending)
            yield rec
            pending = b""


def read_run(path: str) -> dict:
    """``{"id", "name", "group", "job_type", "project", "config": {...}, "history": [{...}], "summary": {...}}``."""
    run: dict = {"config": {}, "history": [], "summary": {}}
    for rec in records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            run.update(id=r.run_id, name=r.display_name, group=r.run_group, job_type=r.job_type, project=r.project)
            run["config"].update({i.key: json.loads(i.value_json) for i in r.config.update})
        elif kind == "config":
            run["config"].update({i.key: json.loads(i.value_json) for i in rec.config.update})
        elif kind == "history":
            run["history"].append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            run["summary"].update({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in rec.summary.update})
    return run


def offline_runs(wandb_dir: str) -> list[dict]:
    return [read_run(p) for p in sorted(glob.glob(os.path.join(wandb_dir, "wandb", "offline-run-*", "run-*.wandb")))]
