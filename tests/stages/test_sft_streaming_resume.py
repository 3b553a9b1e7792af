"""Resume mid-epoch of a streamed SFT stage: each checkpoint holds the ids of the rows trained on
so far in its epoch (one file per rank); a restarted stage leaves exactly those out of the rest of
that epoch, before Ray Train splits the stream, so every row is trained on once per epoch (Ray
Data's split differs per run: "skip the first N rows" would skip other rows)."""

from __future__ import annotations

import os
from array import array
from types import SimpleNamespace

import pytest

from fnsft.pipeline import Pipeline
from fnsft.testing import EXAMPLES, KillAfterCheckpoint, tiny_sft_config

DATA = os.path.join(EXAMPLES, "sample_data.jsonl")
BATCH = 4  # 300 rows, 2 workers: 38 steps, time for the kill after the first checkpoint


def test_checkpoint_holds_the_rows_trained_this_epoch(tmp_path):
    from fnsft.workers.hf.stream import StreamCounts, seen_rows, stream_checkpoint_callback

    args = SimpleNamespace(output_dir=str(tmp_path), per_device_train_batch_size=2, gradient_accumulation_steps=3)
    # rank 0 of a resumed epoch: 2 rows were trained on before the restart
    counts = StreamCounts(epochs=1, resumed_skip=frozenset({-5, 7}))
    cb = stream_checkpoint_callback(counts, rank=0)
    cb.on_epoch_begin(args, SimpleNamespace(global_step=4), None)
    counts.order = array("q", range(100, 120))  # yielded so far: the loader reads ahead of training
    os.makedirs(tmp_path / "checkpoint-6")
    cb.on_save(args, SimpleNamespace(global_step=6), None)  # 2 steps x 2 rows x 3 micro-batches
    assert seen_rows(str(tmp_path / "checkpoint-6")) == frozenset({-5, 7, *range(100, 112)})
    # a later epoch: the rows left out of the resumed one are trained again, so not recorded
    counts.epochs, counts.order = 2, array("q", range(1, 9))
    cb.on_epoch_begin(args, SimpleNamespace(global_step=20), None)
    os.makedirs(tmp_path / "checkpoint-21")
    cb.on_save(args, SimpleNamespace(global_step=21), None)
    other = StreamCounts(epochs=2, order=array("q", range(9, 15)))  # rank 1 at the same checkpoint
    stream_checkpoint_callback(other, rank=1).on_save(args, SimpleNamespace(global_step=21), None)
    assert seen_rows(str(tmp_path / "checkpoint-21")) == frozenset(range(1, 7)) | frozenset(range(9, 15))


@pytest.mark.slow
def test_killed_streamed_stage_trains_each_row_once(tmp_path, ray_session, tiny_model_dir):
    from fnsft.data.tokenize import SFTTokenizeBatch

    cfg = tiny_sft_config(tmp_path / "out", dataset_name_or_path=DATA, num_train_epochs=1, eval_split=0.0,
                          data_streaming=True, save_steps=4, logging_steps=1, per_device_train_batch_size=BATCH)
    cfg["resources"] = {"num_workers": 2, "max_failures": 1}
    with KillAfterCheckpoint(tmp_path / "out", "01_sft", "sft", rank=1) as killer:
        stage = Pipeline.from_dict(cfg).run()["stages"]["sft"]
    assert killer.pid, "the worker was never killed (training ended before the first checkpoint?)"
    assert stage["status"] == "completed"
    m = stage["metrics"]
    resumed = m.get("resumed_from_step", 0)
    assert resumed >= 4 and resumed % 4 == 0, m
    # The rows trained before the checkpoint (its files) and those streamed after the restart are
    # the whole data, each once: their counts add up, and so do the sums of their 64-bit ids.
    with open(DATA) as f:
        lines = [{"text": line} for line in f if line.strip()]
    rows = SFTTokenizeBatch(tiny_model_dir, fmt="alpaca", max_length=128, source=DATA, json_lines=True).rows(lines)
    print(f"resumed from step {resumed} of {m['global_step']}")
    assert m["stream_resume_skip_rows"] == resumed * BATCH * 2  # steps x batch x workers
    assert m["streamed_rows"] + m["stream_resume_skip_rows"] == len(rows), m
    after = sum(int(d, 16) for d in m["stream_row_digest_per_worker"])
    assert (after + int(m["stream_resume_skip_digest"], 16)) % 2**64 == sum(r["row_id"] for r in rows) % 2**64
    assert m["global_step"] == -(-len(rows) // (2 * BATCH))  # the planned steps: no second epoch to fill a short one
