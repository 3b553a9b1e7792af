"""Mid-stage checkpoints of the RL loop (YAML ``rl.save_steps``).

Every ``save_steps`` iterations each rank writes what it needs to continue, and the checkpoint
is reported to Ray Train; when a worker dies (``resources.max_failures``), Ray restarts the
worker group with that checkpoint and the loop continues from the iteration after it — the
role actors outlive the restart and get the restored weights pushed before the next rollout.

A checkpoint directory holds:

- ``deepspeed/`` — the DeepSpeed engine's own checkpoint (module, optimizer, scheduler; every
  rank writes its partition) when the policy trains under DeepSpeed; otherwise
- ``trainable.safetensors`` and ``optimizer.pt`` / ``scheduler.pt`` (rank 0): the trainable
  tensors (adapters + value head under LoRA) and the torch optimizer/scheduler state;
- ``loop_state.json`` (rank 0): iteration, history, evaluations, the prompt order, the Python
  RNG state and the KL controller; ``torch_rng.pt``: torch's RNG state.

Everything loads with ``weights_only=True`` / safetensors: no pickled code.
"""

from __future__ import annotations

import json
import os
from typing import Any

LOOP_STATE = "loop_state.json"


def _trainable(module) -> dict:
    return {n: p.detach().contiguous().cpu() for n, p in module.named_parameters() if p.requires_grad}


def save(trainer, iteration: int, path: str, draw_state=None) -> None:
    """Every rank: write ``trainer``'s state after ``iteration`` into ``path``. ``draw_state``:
    ``(order, rng state)`` as they were before the prompts of rollouts still in flight were drawn
    (asynchronous rollouts); ``None``: the trainer's own."""
    import torch
    from safetensors.torch import save_file

    os.makedirs(path, exist_ok=True)
    strategy = trainer.strategy
    if strategy is not None and strategy.engine is not None:
        strategy.engine.save_checkpoint(os.path.join(path, "deepspeed"), tag="state")
    elif trainer.rank == 0:
        save_file(_trainable(trainer.module), os.path.join(path, "trainable.safetensors"))
        optimizer = strategy.optimizer if strategy is not None else trainer.critic_opt
        torch.save(optimizer.state_dict(), os.path.join(path, "optimizer.pt"))
        if strategy is not None:
            torch.save(strategy.scheduler.state_dict(), os.path.join(path, "scheduler.pt"))
    if trainer.rank == 0:
        order, rng = draw_state if draw_state is not None else (trainer.order, trainer.rng.getstate())
        state: dict[str, Any] = {
            "iteration": iteration, "history": trainer.history, "evals": trainer.evals,
            "order": order, "rng": _jsonable(rng),
            "kl_controller": dict(vars(trainer.kl_ctl)),
        }
        with open(os.path.join(path, LOOP_STATE), "w") as f:
            json.dump(state, f)
        torch.save(torch.get_rng_state(), os.path.join(path, "torch_rng.pt"))


def load(trainer, path: str) -> int:
    """Every rank: restore ``trainer`` from checkpoint directory ``path``; returns its iteration."""
    import torch
    from safetensors.torch import load_file

    strategy = trainer.strategy
    if os.path.isdir(os.path.join(path, "deepspeed")):
        if strategy is None or strategy.engine is None:
            raise RuntimeError(f"{path} is a DeepSpeed checkpoint but this run trains without DeepSpeed")
        strategy.engine.load_checkpoint(os.path.join(path, "deepspeed"), tag="state")
    else:
        tensors = load_file(os.path.join(path, "trainable.safetensors"))
        params = dict(trainer.module.named_parameters())
        missing = [n for n, p in params.items() if p.requires_grad and n not in tensors]
        if missing:
            raise RuntimeError(f"{path}: {len(missing)} trainable tensors missing (e.g. {missing[0]})")
        with torch.no_grad():
            for name, t in tensors.items():
                params[name].copy_(t.to(params[name].device))
        optimizer = strategy.optimizer if strategy is not None else trainer.critic_opt
        optimizer.load_state_dict(torch.load(os.path.join(path, "optimizer.pt"), weights_only=True))
        if strategy is not None:
            strategy.scheduler.load_state_dict(torch.load(os.path.join(path, "scheduler.pt"), weights_only=True))
    with open(os.path.join(path, LOOP_STATE)) as f:
        state = json.load(f)
    trainer.history, trainer.evals, trainer.order = state["history"], state["evals"], state["order"]
    trainer.rng.setstate(_tupled(state["rng"]))
    vars(trainer.kl_ctl).update(state["kl_controller"])
    rng_path = os.path.join(path, "torch_rng.pt")
    if os.path.isfile(rng_path):
        torch.set_rng_state(torch.load(rng_path, weights_only=True))
    return int(state["iteration"])


def _jsonable(x):
    return [_jsonable(v) for v in x] if isinstance(x, (tuple, list)) else x


def _tupled(x):
    return tuple(_tupled(v) for v in x) if isinstance(x, list) else x
