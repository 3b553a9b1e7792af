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

**Resume mid-epoch** (:mod:`fnsft.data.stream_skip`): every rank keeps the ids of the rows it
yielded this epoch, in order; at each checkpoint :func:`stream_checkpoint_callback` writes the ids
of those already trained on (the first ``steps x batch x accumulation`` since the epoch began, and
on rank 0 the rows left out after an earlier resume in the same epoch) into the checkpoint, one
file per rank. A resumed stage reads every rank's file (:func:`seen_rows`) and rank 0 hands them
to the stage's ``SkipRows`` actor before the resumed epoch's stream starts, so the tokenizers
leave them out; rank 0 clears it when the next epoch starts. HF's own batch skipping is off
(``ignore_data_skip``): its count of batches would skip rows never trained on.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
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
    # Mid-epoch resume: the rows left out of the resumed epoch (trained on before the restart),
    # the ids yielded in the current epoch in order, the optimizer step the current epoch began at.
    resumed_skip: frozenset = frozenset()
    order: array = field(default_factory=lambda: array("q"))
    epoch_start_step: int = 0


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

    def __init__(self, columns: tuple[str, ...], counts: StreamCounts, skip_actor: str = ""):
        self.columns, self.counts, self.skip_actor = columns, counts, skip_actor

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
        counts.order = array("q")
        first = counts.epochs == 1
        if counts.epochs == 2 and counts.resumed_skip and own == 0 and self.skip_actor:
            clear_skip_rows(self.skip_actor)  # before this epoch's stream starts (it waits for every rank)
        for batch in shard.iter_batches(batch_size=READ_BATCH_ROWS, batch_format="pyarrow"):
            for row in batch.to_pylist():
                counts.order.append(row["row_id"])
                if first:
                    counts.rows += 1
                    counts.tokens += row["length"]
                    counts.truncated += bool(row["truncated"])
                    counts.row_digest = (counts.row_digest + row["row_id"]) % 2**64
                yield {name: row[name] for name in columns}
        if first:
            counts.first_epoch_complete = True


def stream_train_dataset(columns: tuple[str, ...], world_size: int, counts: StreamCounts, skip_actor: str = ""):
    """This worker's Ray Train shard as a ``datasets.IterableDataset`` of ``columns`` (TRL's
    processed columns), counting the first epoch into ``counts``. Set ``counts.reading`` when
    training starts: before, the set yields one placeholder row (for the trainer's init).
    ``skip_actor``: the stage's ``SkipRows`` actor (mid-epoch resume)."""
    import datasets

    return datasets.IterableDataset.from_generator(_ShardRows(columns, counts, skip_actor),
                                                   features=_features(columns),
                                                   gen_kwargs={"rank": list(range(world_size))})


SEEN_FILE = "stream_seen_rank{rank}.npy"


def seen_rows(checkpoint_dir: str) -> frozenset:
    """The row ids trained on in the epoch a checkpoint was taken in: every rank's file (the
    resumed stage may run another number of workers)."""
    import glob
    import os

    import numpy as np

    ids: set = set()
    for path in glob.glob(os.path.join(checkpoint_dir, SEEN_FILE.format(rank="*"))):
        ids.update(int(x) for x in np.load(path))
    return frozenset(ids)


def resume_stream(counts: StreamCounts, checkpoint_dir: str, skip_actor: str, rank: int) -> int:
    """A resumed stage: the rows its checkpoint trained on this epoch leave the resumed epoch
    (rank 0 hands them to the ``SkipRows`` actor before any rank reads); how many."""
    import ray

    counts.resumed_skip = seen_rows(checkpoint_dir)
    if rank == 0 and skip_actor:
        ray.get(ray.get_actor(skip_actor).set.remote(sorted(counts.resumed_skip)))
    return len(counts.resumed_skip)


def clear_skip_rows(skip_actor: str) -> None:
    import ray

    ray.get(ray.get_actor(skip_actor).clear.remote())


def stream_checkpoint_callback(counts: StreamCounts, rank: int):
    """A ``TrainerCallback`` that notes where each epoch begins and, at each save, writes this
    rank's trained row ids into the checkpoint folder, before it is reported to Ray Train (put it
    first among the callbacks)."""
    from transformers import TrainerCallback

    class StreamCheckpoint(TrainerCallback):
        def on_epoch_begin(self, args, state, control, **kw):
            counts.epoch_start_step = state.global_step

        def on_save(self, args, state, control, **kw):
            import os

            import numpy as np
            import torch.distributed as dist

            rows = (state.global_step - counts.epoch_start_step) * args.per_device_train_batch_size \
                * args.gradient_accumulation_steps
            trained = np.frombuffer(counts.order, dtype=np.int64)[:rows]
            if rank == 0 and counts.epochs == 1 and counts.resumed_skip:  # still the resumed epoch
                trained = np.concatenate([trained, np.asarray(sorted(counts.resumed_skip), dtype=np.int64)])
            folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            np.save(os.path.join(folder, SEEN_FILE.format(rank=rank)), trained)
            if dist.is_available() and dist.is_initialized():  # every rank's file is in before any uploads
                dist.barrier()

    return StreamCheckpoint()


def gather_stream_counts(counts: StreamCounts) -> dict[str, Any]:
    """Every rank's counts (rank order) and their sums, for the stage's metrics; a collective:
    every rank calls it."""
    import torch.distributed as dist

    mine = [counts.rows, counts.tokens, counts.truncated, counts.row_digest, counts.first_epoch_complete]
    skip = counts.resumed_skip
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
        # a resumed stage: the rows of its first epoch trained on before the restart, left out
        **({"stream_resume_skip_rows": len(skip), "stream_resume_skip_digest": f"{sum(skip) % 2**64:016x}"}
           if skip else {}),
    }
