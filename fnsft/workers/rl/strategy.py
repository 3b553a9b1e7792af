"""How a custom training loop steps one module on every worker: DeepSpeed, DDP or plain torch.

:class:`Strategy` wraps a module with its AdamW optimizer and LR scheduler (from the stage's
``learning_rate``, ``weight_decay``, ``warmup_steps``, ``lr_scheduler_type``, ``max_grad_norm``)
as a DeepSpeed engine (ZeRO 0-2, the job's generated ``deepspeed`` dict), DDP (several workers,
``deepspeed.enabled: false``) or plain torch (one worker). Call it like the module; one
:meth:`Strategy.backward_step` per minibatch.

The collectives below are no-ops on one worker, so a loop written with them runs unchanged on
1..N Ray Train workers: :func:`broadcast_object` (rank 0's object to every rank),
:func:`gather_rows` (reassemble a batch sharded ``rows[rank::world]``), :func:`mean_stats`
(mean of per-minibatch stats over minibatches, then ranks), :func:`active_dist`
(``torch.distributed`` when a process group of more than one rank is up, else ``None``).
Used by the RL learner (:mod:`fnsft.workers.rl.learner`); any custom loop may use them.
"""

from __future__ import annotations

import json


class Strategy:
    """Backward/step for one module: a DeepSpeed engine, DDP, or plain torch (one worker)."""

    def __init__(self, module, params, job, world: int, micro_batch: int, total_steps: int, device,
                 precision=None):
        import torch
        from transformers import get_scheduler

        c = job.stage_config
        self.module = module
        self.params = params
        self.kind = "torch"
        self.clip = c.max_grad_norm
        # The module's forward autocasts (fnsft.models.precision); params stay float32. float16
        # scales the loss: torch's GradScaler here, DeepSpeed's dynamic loss scale under it.
        self.precision = precision
        fp16 = precision is not None and precision.compute == "float16"
        self.scaler = precision.grad_scaler(device.type) if fp16 and job.deepspeed is None else None
        # optim (HF's name): adamw_torch_fused, HF's default and ours, is torch's one-kernel AdamW:
        # 0.09 s a step for SmolLM2's 135M weights on this CPU where the per-tensor loop takes 0.40 s.
        optimizer = torch.optim.AdamW(params, lr=c.learning_rate, weight_decay=c.weight_decay,
                                      fused=True if c.optim == "adamw_torch_fused" else None)
        warmup = int(c.warmup_steps * total_steps) if 0 < c.warmup_steps < 1 else int(c.warmup_steps)
        scheduler = get_scheduler(c.lr_scheduler_type, optimizer, num_warmup_steps=warmup,
                                  num_training_steps=max(total_steps, 1))
        if job.deepspeed is not None:
            import deepspeed

            cfg = _concrete_deepspeed(job.deepspeed, micro_batch, world, c.max_grad_norm)
            if fp16 and precision.fp16:  # GPU: DeepSpeed's fp16 optimizer keeps float32 masters
                cfg["fp16"] = {"enabled": True, "loss_scale": 0}
            # A torch optimizer (not DeepSpeed's JIT-compiled Adam): allowed by zero_allow_untested_optimizer.
            self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
                model=module, optimizer=optimizer, lr_scheduler=scheduler, config=cfg)
            self.kind = f"deepspeed-zero{cfg['zero_optimization']['stage']}"
            self.forward_module = self.engine
        else:
            self.engine = None
            self.optimizer, self.scheduler = optimizer, scheduler
            self.forward_module = module
            if world > 1:
                from torch.nn.parallel import DistributedDataParallel

                self.forward_module = DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
                self.kind = "ddp"

    def __call__(self, *args, **kwargs):
        return self.forward_module(*args, **kwargs)

    def backward_step(self, loss) -> float:
        """One optimizer step on ``loss``; returns the gradient norm (before clipping) when known."""
        if self.engine is not None:
            self.engine.backward(loss)
            self.engine.step()
            norm = self.engine.get_global_grad_norm()
            return float(norm) if norm is not None else float("nan")
        from fnsft.models.precision import optimizer_step

        norm = optimizer_step(loss, self.optimizer, self.params, self.clip, self.scaler)
        self.scheduler.step()
        return norm


def _concrete_deepspeed(base: dict, micro_batch: int, world: int, clip: float) -> dict:
    """The generated DeepSpeed dict with its HF "auto" values made concrete (no HF Trainer here)."""
    cfg = json.loads(json.dumps(base))
    cfg["train_micro_batch_size_per_gpu"] = max(1, micro_batch)
    cfg["gradient_accumulation_steps"] = 1
    cfg["train_batch_size"] = max(1, micro_batch) * world
    cfg["gradient_clipping"] = clip
    cfg["bf16"] = {"enabled": False}
    cfg["fp16"] = {"enabled": False}
    cfg.pop("scheduler", None)
    cfg.pop("optimizer", None)
    return cfg


# Collectives (no-ops on one worker) -------------------------------------------------------
def active_dist():
    """``torch.distributed`` when a process group of more than one rank is up, else ``None``."""
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1 else None


def broadcast_object(obj, rank: int):
    """Rank 0's ``obj`` (any picklable object) on every rank."""
    dist = active_dist()
    if dist is None:
        return obj
    box = [obj if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_rows(part: dict, world: int, n: int) -> dict:
    """Reassemble per-rank shards (rank r holds rows r, r+world, ...) into the full batch."""
    import torch

    dist = active_dist()
    if dist is None:
        return part
    parts = [None] * world
    dist.all_gather_object(parts, {k: v.cpu() for k, v in part.items()})
    out = {}
    for k in parts[0]:
        full = torch.zeros((n,) + tuple(parts[0][k].shape[1:]), dtype=parts[0][k].dtype)
        for r, p in enumerate(parts):
            full[r::world] = p[k]
        out[k] = full
    return out


def mean_stats(stats: list[dict], device) -> dict[str, float]:
    """Mean of each stat over minibatches, then over ranks."""
    import torch

    keys = sorted({k for s in stats for k in s})
    if not keys:
        return {}
    local = torch.tensor([sum(float(s[k]) for s in stats if k in s) / max(1, sum(k in s for s in stats))
                          for k in keys], dtype=torch.float64)
    dist = active_dist()
    if dist is not None:
        dist.all_reduce(local)
        local /= dist.get_world_size()
    return dict(zip(keys, local.tolist()))
