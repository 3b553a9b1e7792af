"""The training rows of a streamed SFT stage, read from this worker's Ray Train shard
(YAML ``stage_configs.sft.data_streaming``).

Ray Train splits the stage's Ray Dataset between the workers (``TorchTrainer(datasets=...)``,
``DataConfig``); each worker reads its own shard with ``ray.train.get_dataset_shard("train")``.
HF's Trainer wants a ``datasets`` set, so the shard is presented as a
``datasets.IterableDataset.from_generator`` with one generator argument per rank: it then has
``n_shards == world_size`` and accelerate's ``prepare_data_loader`` calls ``.shard(world, rank)``
on it, keeping on each rank the generator that reads that rank's own Ray shard. (A plain torch
``IterableDataset`` would be wrapped in accelerate's ``IterableDatasetShard``, which keeps every
Nth batch and silently drops the rest of an already split shard.)

While the rows stream by, :class:`StreamCounts` sums what the tokenization pass wrote beside
them (``length``, ``truncated``, ``row_id``) over the first epoch: the truncation count and the
row count without a second pass over the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Rows per read from the Ray shard (each becomes one pyarrow batch in this process).
READ_BATCH_ROWS = 256


@dataclass
class StreamCounts:
    """What one worker streamed over its first epoch: rows, tokens, truncated rows, and
    ``row_digest`` (the sum of the rows' 64-bit ``row_id`` modulo 2**64: two workers' digests
    add up to the whole set's exactly when, barring hash collisions, they read disjoint parts
    covering it). ``epochs``: how many times the shard was started."""

    reading: bool = False  # set when training starts; before that the stream answers peeks only
    rows: int = 0
    tokens: int = 0
    truncated: int = 0
    row_digest: int = 0
    epochs: int = 0
    first_epoch_complete: bool = False


def _features(columns: tuple[str, ...]):
    import datasets

    types = {"input_ids": datasets.Sequence(datasets.Value("int32")),
             "completion_mask": datasets.Sequence(datasets.Value("int8"))}
    return datasets.Features({name: types[name] for name in columns})


class _ShardRows:
    """The generator of the ``datasets`` set: this worker's Ray shard, row by row.

    A module-level callable object rather than a closure: ``datasets`` hashes its generator
    with dill, which disassembles closures and prints the disassembly in a Ray worker.
    """

    def __init__(self, columns: tuple[str, ...], counts: StreamCounts):
        self.columns, self.counts = columns, counts

    def __call__(self, rank: list[int]):
        import ray.train

        counts, columns = self.counts, self.columns
        if not counts.reading:
            # TRL 1.16's SFTTrainer takes one example at init to look for images; reading the
            # Ray shard for it would start an epoch of the split on this rank alone.
            yield {name: [0] for name in columns}
            return
        own = ray.train.get_context().get_world_rank()
        if rank != [own]:  # accelerate kept another rank's generator: the shards would overlap
            raise RuntimeError(f"stream shard {rank} read by rank {own}")
        shard = ray.train.get_dataset_shard("train")
        counts.epochs += 1
        first = counts.epochs == 1
        for batch in shard.iter_batches(batch_size=READ_BATCH_ROWS, batch_format="pyarrow"):
            for row in batch.to_pylist():
                if first:
                    counts.rows += 1
                    counts.tokens += row["length"]
                    counts.truncated += bool(row["truncated"])
                    counts.row_digest = (counts.row_digest + row["row_id"]) % 2**64
                yield {name: row[name] for name in columns}
        if first:
            counts.first_epoch_complete = True


def stream_train_dataset(columns: tuple[str, ...], world_size: int, counts: StreamCounts):
    """This worker's Ray Train shard as a ``datasets.IterableDataset`` of ``columns`` (TRL's
    processed columns), counting the first epoch into ``counts``. Set ``counts.reading`` when
    training starts: before, the set yields one placeholder row (for the trainer's init)."""
    import datasets

    return datasets.IterableDataset.from_generator(_ShardRows(columns, counts), features=_features(columns),
                                                   gen_kwargs={"rank": list(range(world_size))})


def gather_stream_counts(counts: StreamCounts) -> dict[str, Any]:
    """Every rank's counts (rank order) and their sums, for the stage's metrics; a collective:
    every rank calls it."""
    import torch.distributed as dist

    mine = [counts.rows, counts.tokens, counts.truncated, counts.row_digest, counts.first_epoch_complete]
    every = [mine]
    if dist.is_available() and dist.is_initialized():
        every = [None] * dist.get_world_size()
        dist.all_gather_object(every, mine)
    return {
        "stream_rows_per_worker": [e[0] for e in every],
        "stream_row_digest_per_worker": [f"{e[3]:016x}" for e in every],
        "stream_first_epoch_complete": all(e[4] for e in every),
        "streamed_rows": sum(e[0] for e in every),
        "streamed_tokens": sum(e[1] for e in every),
        "truncated_examples": sum(e[2] for e in every),
    }
