"""The SFT stage's streaming path (``data_streaming: true``): Ray Data reads and tokenizes the
rows, Ray Train hands each worker its own shard, the driver never holds the training rows.

One test, two runs on the tiny model (the expensive part is each run's start-up): the same
data and settings in memory and streamed. The streamed run must learn as the in-memory run
does, its two workers must read disjoint shards that together are the training rows, and the
driver must never read the whole file.
"""

from __future__ import annotations

import os

import pytest

from fnsft.pipeline import Pipeline
from fnsft.testing import EXAMPLES, tiny_sft_config

DATA = os.path.join(EXAMPLES, "sample_data.jsonl")


def _expected_train_rows(tiny_dir: str, n_eval: int) -> list[dict]:
    """Every training row as the batch function makes it: the data's rows less the first
    ``n_eval`` (held out), tokenized without Ray."""
    from fnsft.data.tokenize import SFTTokenizeBatch

    with open(DATA) as f:
        lines = [{"text": line} for line in f if line.strip()]
    fn = SFTTokenizeBatch(tiny_dir, fmt="alpaca", max_length=128, source=DATA, json_lines=True)
    rows = fn.rows(lines)
    held = {r["row_id"] for r in rows[:n_eval]}
    return [r for r in rows if r["row_id"] not in held]


def _run(tmp_path, name, **sft):
    cfg = tiny_sft_config(tmp_path / name, dataset_name_or_path=DATA, num_train_epochs=1, logging_steps=4, **sft)
    stage = Pipeline.from_dict(cfg).run()["stages"]["sft"]
    assert stage["status"] == "completed"
    return stage["metrics"]


@pytest.mark.slow
def test_streamed_sft_learns_like_in_memory_on_disjoint_shards(tmp_path, ray_session, tiny_model_dir, monkeypatch):
    in_memory = _run(tmp_path, "memory")

    # From here the driver must not read the whole file: the readers of the in-memory path fail.
    import fnsft.data.files
    import fnsft.data.rows

    def refuse(*a, **k):
        raise AssertionError("the driver read every row of the data")

    monkeypatch.setattr(fnsft.data.files, "load_rows", refuse)
    monkeypatch.setattr(fnsft.data.rows, "read_rows", refuse)
    streamed = _run(tmp_path, "stream", data_streaming=True)

    # Learning: the held-out loss falls by a clear margin, as it does in memory.
    for m in (in_memory, streamed):
        assert m["eval_loss"] < 0.9 * m["before_eval_loss"], m
    drop = {k: 1 - m["eval_loss"] / m["before_eval_loss"] for k, m in (("memory", in_memory), ("stream", streamed))}
    assert drop["stream"] > 0.5 * drop["memory"], drop
    # The same number of optimizer steps: the epochs became max_steps from Ray Data's row count.
    assert streamed["eval_rows"] == in_memory["eval_rows"] == 30
    assert streamed["train_rows"] == in_memory["train_rows"] == 270
    assert streamed["global_step"] == in_memory["global_step"], (streamed["global_step"], in_memory["global_step"])

    # Shards: each worker read half the training rows; the two digests (sums of the rows' 64-bit
    # ids) add up to the whole training set's, which overlapping or missing rows would break.
    expected = _expected_train_rows(tiny_model_dir, streamed["eval_rows"])
    assert streamed["stream_first_epoch_complete"]
    assert streamed["stream_rows_per_worker"] == [len(expected) // 2] * 2
    digests = [int(d, 16) for d in streamed["stream_row_digest_per_worker"]]
    assert digests[0] != digests[1]
    assert sum(digests) % 2**64 == sum(r["row_id"] for r in expected) % 2**64
    # The truncation count and the tokens came from the same pass, summed over the shards.
    assert streamed["truncated_examples"] == sum(r["truncated"] for r in expected)
    assert streamed["streamed_tokens"] == sum(r["length"] for r in expected)
