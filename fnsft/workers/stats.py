"""What a training stage's workers measure about themselves: useful tokens/s, peak RSS per
rank, and whether ZeRO-3 partitioned the model as it was built (summary metrics of SFT/DPO).

Metric names (``pipeline_summary.json`` → ``stages.<name>.metrics``):

- ``useful_tokens``, ``useful_tokens_per_second``: non-padding tokens of all workers (HF's
  ``include_num_input_tokens_seen="non_padding"``) from the first step to the last;
  ``train_tokens_per_second_steady``: the same after 2 warm-up steps.
- ``worker_peak_rss_mb`` (one per rank) and ``worker_peak_rss_mb_max``.
- ``placement``: ``{"workers": [{"rank", "node_id", "ip"}, ...]}`` (:func:`gather_worker_nodes`;
  the RL stage adds ``"roles"``: each role actor's node).
- ``zero3_partitioned_at_load`` / ``params_materialized_at_load``: under ZeRO-3, every parameter
  carries DeepSpeed's ``ds_id`` right after loading and this rank holds none of them in full
  (no host copy of the whole model was built before partitioning).
"""

from __future__ import annotations

import time


def zero3_load_stats(model) -> dict:
    """How the model came out of loading: partitioned by ZeRO-3, and how many parameter
    elements this rank holds in full (0 for a model built under ``deepspeed.zero.Init``)."""
    params = list(model.parameters())
    return {"zero3_partitioned_at_load": bool(params) and all(hasattr(p, "ds_id") for p in params),
            "params_materialized_at_load": int(sum(p.numel() for p in params))}


def gather_peak_rss() -> list[float]:
    """Every rank's peak RSS (MiB), in rank order (a collective: all ranks call it)."""
    from fnsft.workers.rl.strategy import active_dist
    from fnsft.utils.memory import peak_rss_mb

    mine = peak_rss_mb()
    dist = active_dist()
    if dist is None:
        return [mine]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, mine)
    return out


def gather_worker_nodes() -> list[dict]:
    """Every rank's ``{"rank", "node_id", "ip"}``, in rank order (a collective: all ranks call it)."""
    import ray

    from fnsft.workers.rl.strategy import active_dist

    dist = active_dist()
    rank = dist.get_rank() if dist is not None else 0
    mine = {"rank": rank, "node_id": ray.get_runtime_context().get_node_id(), "ip": ray.util.get_node_ip_address()}
    if dist is None:
        return [mine]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, mine)
    return out


def zero3_init(job, args: dict):
    """Under ZeRO-3 (and no bitsandbytes), the HF TrainingArguments whose DeepSpeed config
    makes transformers build the model inside ``deepspeed.zero.Init``: each rank then holds only
    its partition, never a full host copy. Keep the returned object alive while loading."""
    c = job.stage_config
    stage = ((job.deepspeed or {}).get("zero_optimization") or {}).get("stage")
    if stage != 3 or getattr(c, "load_in_4bit", False) or getattr(c, "load_in_8bit", False):
        return None
    import torch.distributed as dist
    from transformers import TrainingArguments

    hf_args = TrainingArguments(**{k: v for k, v in args.items() if k != "train_sampling_strategy"})
    if dist.is_available() and dist.is_initialized():
        import deepspeed

        # zero.Init checks the batch sizes against DeepSpeed's world size, which reads 1 until
        # DeepSpeed wraps the process group Ray Train set up (the trainer would do it later).
        deepspeed.init_distributed(dist_backend=dist.get_backend())
    return hf_args


def throughput_meter(metrics: dict, warmup_steps: int = 2):
    """Records useful (non-padding, all workers) tokens/s from the first step to the last
    (``useful_tokens_per_second``) and in the steady state after ``warmup_steps``
    (``train_tokens_per_second_steady``).

    The benchmarks attach the same meter to a plain TRL trainer, so both sides are measured alike.
    """
    from transformers import TrainerCallback

    class ThroughputMeter(TrainerCallback):
        def __init__(self):
            self.points: list[tuple[float, int, int]] = []

        def on_train_begin(self, args, state, control, **kw):
            metrics["train_begin_unix"] = time.time()
            self.first = None

        def on_step_begin(self, args, state, control, **kw):
            if self.first is None:  # after set-up and any evaluation before training
                self.first = (time.time(), state.num_input_tokens_seen or 0)

        def on_step_end(self, args, state, control, **kw):
            self.points.append((time.time(), state.global_step, state.num_input_tokens_seen or 0))

        def on_train_end(self, args, state, control, **kw):
            if self.first is not None and self.points and self.points[-1][0] > self.first[0]:
                tokens = self.points[-1][2] - self.first[1]
                metrics["useful_tokens"] = int(tokens)
                metrics["useful_tokens_per_second"] = round(tokens / (self.points[-1][0] - self.first[0]), 2)
            pts = self.points[warmup_steps:] if len(self.points) > warmup_steps + 1 else self.points
            if len(pts) >= 2 and pts[-1][0] > pts[0][0]:
                dt = pts[-1][0] - pts[0][0]
                metrics["train_tokens_per_second_steady"] = (pts[-1][2] - pts[0][2]) / dt
                metrics["train_steps_per_second_steady"] = (pts[-1][1] - pts[0][1]) / dt
                metrics["seconds_per_step_steady"] = dt / (pts[-1][1] - pts[0][1])

    return ThroughputMeter()
