"""``ModelServer``: the one base of every role that serves a Hugging Face model to the RL loop.

Generation (:class:`~fnsft.actors.generation.GenerationActor`), the reference
(:class:`~fnsft.actors.reference.ReferenceActor`), reward models
(:class:`~fnsft.actors.reward.SequenceClassifierReward`), and the judge and teacher of RLAIF and
CoT distillation derive from it. A subclass is a small file: its constructor (after
``super().__init__``) and one batched method.

Contract
--------
``ModelServer(model, *, dtype="auto", batch_size=0, lora=None, replica=0)``

- ``model``: the stage's :class:`~fnsft.models.handle.ModelHandle` (weights in the object store,
  a directory or the hub id); :meth:`load_model` turns it into a ``transformers`` model — override
  it for another head or source (the reward model loads a sequence classifier from a directory).
- ``dtype``: ``auto`` (:func:`fnsft.models.precision.resolve_precision` for the served model), or a torch dtype name.
- ``batch_size``: rows per forward/generate call in :meth:`batches` (0 = all at once).
- ``lora``: a PEFT ``LoraConfig`` when the trainer trains adapters; the served copy is wrapped
  the same way so pushed adapter tensors keep their names.
- ``replica``: the actor's index in its :class:`~fnsft.actors.group.ActorGroup` (set by it).

After construction: ``self.model`` (on ``self.device``, in eval mode), ``self.dtype``,
``self.batch_size``, ``self.lora_only``, ``self.version`` (the last pushed weights, 0 = as loaded).

Methods every server has:

- :meth:`ready` — ``ActorGroup.wait_ready`` calls it once the constructor returned;
- :meth:`load_weights` ``(packed, version, checksum)`` — a weight push
  (:func:`push_policy_weights` sends one to a whole group): numpy arrays from the object store,
  adapters only under LoRA; returns an ack ``{"replica", "version", "load_s"[, "checksum"]}``;
  subclasses that keep the weights elsewhere (vLLM) override :meth:`install_weights`;
- :meth:`weights_checksum` / :meth:`get_weights` — what the server now holds (tests compare it
  with the trainer's).

A subclass adds a batched method taking lists (one entry per row) and returning lists or numpy
arrays aligned with them; the driver spreads a batch over the replicas with
``group.split(rows, lambda actor, chunk: actor.my_method.remote(chunk, ...))``::

    class TeacherActor(ModelServer):
        def __init__(self, model, chat_template=None, **kw):
            super().__init__(model, **kw)
            self.tokenizer = load_tokenizer(model.source, model.trust_remote_code, chat_template)

        def answer(self, prompts: list) -> list[str]:
            out = []
            for rows in self.batches(len(prompts)):
                out += ...  # generate for prompts[rows]
            return out

The class is plain Python (tests call it directly); ``ActorGroup`` makes it a Ray actor.
"""

from __future__ import annotations

import time
from typing import Any


class ModelServer:
    """Holds a Hugging Face model, loads it from a ModelHandle, accepts weight pushes, serves batches."""

    def __init__(self, model: Any, *, dtype: str = "auto", batch_size: int = 0, lora=None, replica: int = 0):
        import torch

        from fnsft.models.loading import resolve_torch_dtype
        from fnsft.utils.console import quiet_libraries

        quiet_libraries()
        self.replica = replica
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = resolve_torch_dtype(dtype, self.device.type == "cuda", model)
        self.batch_size = batch_size
        self.lora_only = lora is not None
        self.model = self.load_model(model)
        if lora is not None:
            from peft import get_peft_model

            self.model = get_peft_model(self.model, lora)
        self.model = self.model.to(self.device).eval()
        self.version = 0

    def load_model(self, model):
        """The served ``transformers`` model (a causal LM from the handle; override for others)."""
        return model.load(dtype=self.dtype)

    def ready(self) -> bool:
        return True

    def batches(self, n: int) -> list[slice]:
        """Slices of ``n`` rows, ``batch_size`` at a time (one slice when ``batch_size`` is 0)."""
        step = self.batch_size or max(n, 1)
        return [slice(s, s + step) for s in range(0, n, step)]

    # Weights ----------------------------------------------------------------------------
    def load_weights(self, packed: dict, version: int = 0, checksum: bool = False) -> dict:
        """Load pushed weights (numpy arrays from the object store); returns an ack.

        ``packed`` is :func:`fnsft.models.weights.state_dict_to_numpy` of the adapters (LoRA)
        or the full state dict. The ack carries the load time and, if asked, a checksum of
        what this actor now holds (tests compare it with the trainer's).
        """
        import warnings

        from fnsft.models.weights import numpy_to_state_dict

        t0 = time.perf_counter()
        with warnings.catch_warnings():  # read-only views of the object store; we only copy_ from them
            warnings.simplefilter("ignore", UserWarning)
            state = numpy_to_state_dict(packed, copy=False)
        self.install_weights(state)
        self.version = version
        ack = {"replica": self.replica, "version": version, "load_s": time.perf_counter() - t0}
        if checksum:
            ack["checksum"] = self.weights_checksum()
            ack["checksum_of"] = getattr(self, "engine", "hf")  # vllm: the engine's weights, its names
        return ack

    def install_weights(self, state: dict) -> None:
        """Copy ``state`` (torch tensors) into the served model."""
        from fnsft.actors.modeling import load_policy_weights

        load_policy_weights(self.model, {k: v.to(self.device) for k, v in state.items()}, self.lora_only)

    def weights_checksum(self) -> str:
        """Checksum of the tensors this actor serves with (adapters only under LoRA)."""
        from fnsft.actors.modeling import policy_weights, weights_checksum

        return weights_checksum(policy_weights(self.model, self.lora_only))

    def get_weights(self) -> dict:
        """The served tensors as numpy (tests compare them with the trainer's)."""
        from fnsft.actors.modeling import policy_weights
        from fnsft.models.weights import state_dict_to_numpy

        return state_dict_to_numpy(policy_weights(self.model, self.lora_only))


def push_policy_weights(group, policy, lora_only: bool, version: int, verify: bool = False,
                        wait: bool = True) -> dict[str, float]:
    """Send ``policy``'s weights (adapters only with ``lora_only``) to every actor of ``group``.

    One ``ray.put`` of numpy arrays, read zero-copy by every actor on the node. With ``wait``
    (or ``verify``) it returns once all replicas have acknowledged
    (:meth:`ModelServer.load_weights`); the sync time, the megabytes sent, the slowest actor's
    load time and, with ``verify``, how many actors' checksums differ from the trainer's.
    Without: it returns once the calls are sent, with their pending acks under ``"acks"``
    (:class:`WeightPusher` pipelines pushes this way).
    """
    import ray

    from fnsft.actors.modeling import nbytes, policy_weights, weights_checksum
    from fnsft.models.weights import state_dict_to_numpy

    t0 = time.perf_counter()
    state = policy_weights(policy, lora_only)
    packed = state_dict_to_numpy(state)
    ref = ray.put(packed)
    pending = [a.load_weights.remote(ref, version, verify) for a in group.actors]
    out: dict[str, Any] = {"weight_sync_mb": nbytes(packed) / 2**20}
    if not (wait or verify):
        out["weight_sync_s"] = time.perf_counter() - t0
        out["acks"] = pending
        return out
    acks = ray.get(pending)
    out.update(weight_sync_s=time.perf_counter() - t0, weight_load_s=max(a["load_s"] for a in acks))
    if verify:
        local = weights_checksum(state)
        hf = [a["checksum"] for a in acks if a.get("checksum_of") != "vllm"]
        engine = {a["checksum"] for a in acks if a.get("checksum_of") == "vllm"}
        # vLLM names weights its own way: its replicas must agree with each other.
        out["weight_sync_mismatches"] = float(sum(c != local for c in hf) + max(len(engine) - 1, 0))
    return out


class WeightPusher:
    """Rank 0's weight pushes to the generation group, without waiting for each acknowledgement.

    An actor runs the calls of one caller in the order they were sent, so the next rollout's
    ``generate`` runs after the ``load_weights`` sent before it: waiting for the ack in between
    only adds a round trip per iteration (the actor loads while the trainer records the
    iteration). The acks are collected at the next push and by :meth:`settle` (before the
    weights are handed back), so a failed load still stops the stage. ``verify`` pushes (tests)
    wait, as they compare checksums at once.
    """

    def __init__(self, group, lora_only: bool, verify: bool = False):
        self.group, self.lora_only, self.verify = group, lora_only, verify
        self.pending: list = []

    def push(self, policy, version: int) -> dict[str, float]:
        """Send ``policy``'s weights as ``version``; the stats of :func:`push_policy_weights`
        (``weight_load_s``: the previous push's slowest load)."""
        t0 = time.perf_counter()
        acks = self.settle()
        out = push_policy_weights(self.group, policy, self.lora_only, version, self.verify, wait=False)
        self.pending = out.pop("acks", [])
        out["weight_sync_s"] = time.perf_counter() - t0
        if acks:
            out.setdefault("weight_load_s", max(a["load_s"] for a in acks))
        return out

    def settle(self) -> list[dict]:
        """Wait for the pushes still unacknowledged (raises an actor's error); their acks."""
        import ray

        pending, self.pending = self.pending, []
        return ray.get(pending) if pending else []
