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
``self.batch_size``, ``self.lora_only``, ``self.version`` (the last pushed weights, 0 = as loaded),
``self.restarted`` (Ray restarted this actor after a crash or a lost node, and no push has
reached it since: it holds the handle's weights, not the trainer's).

Methods every server has:

- :meth:`ready` — ``ActorGroup.wait_ready`` calls it once the constructor returned;
- :meth:`load_weights` ``(packed, version, checksum)`` — a weight push
  (:func:`push_policy_weights` sends one to a whole group): numpy arrays from the object store,
  adapters only under LoRA; returns an ack ``{"replica", "version", "load_s"[, "checksum"[, "engine_matches"]]}``;
  subclasses that keep the weights elsewhere (vLLM) override :meth:`install_weights` and
  :meth:`weights_report`;
- :meth:`weights_checksum` / :meth:`get_weights` — what the server now holds (tests compare it
  with the trainer's);
- :meth:`weights_version` / :meth:`mark_current` — which weights it holds; the trainer's
  :meth:`WeightPusher.resync` reads it after a restart and re-pushes (or, before the first
  push, marks the handle's weights current).

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


class StaleWeightsError(RuntimeError):
    """A restarted actor was asked to serve before the trainer's current weights reached it."""


def restarted_by_ray() -> bool:
    """True inside a Ray actor that Ray has restarted (``max_restarts``); False outside Ray."""
    import ray

    if not ray.is_initialized():
        return False
    import warnings

    ctx = ray.get_runtime_context()
    with warnings.catch_warnings():  # Ray's property reads its own deprecated actor_id inside
        warnings.simplefilter("ignore", DeprecationWarning)
        return ctx.get_actor_id() is not None and ctx.was_current_actor_reconstructed


class ModelServer:
    """Holds a Hugging Face model, loads it from a ModelHandle, accepts weight pushes, serves batches."""

    def __init__(self, model: Any, *, dtype: str = "auto", batch_size: int = 0, lora=None, replica: int = 0):
        import torch

        from fnsft.models.loading import resolve_torch_dtype
        from fnsft.utils.console import quiet_libraries

        quiet_libraries(datasets=False)
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
        self.restarted = restarted_by_ray()

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
        self.version, self.restarted = version, False
        ack = {"replica": self.replica, "version": version, "load_s": time.perf_counter() - t0}
        if checksum:
            ack.update(self.weights_report())
        return ack

    def weights_version(self) -> dict:
        """``{"replica", "version", "restarted"}``: the weights this actor serves with."""
        return {"replica": self.replica, "version": self.version, "restarted": self.restarted}

    def mark_current(self, checksum: bool = False) -> dict:
        """The trainer has pushed nothing yet: the handle's weights this actor loaded are current."""
        self.restarted = False
        ack = {"replica": self.replica, "version": self.version, "load_s": 0.0}
        if checksum:
            ack.update(self.weights_report())
        return ack

    def install_weights(self, state: dict) -> None:
        """Copy ``state`` (torch tensors) into the served model."""
        from fnsft.models.weights import load_policy_weights

        load_policy_weights(self.model, {k: v.to(self.device) for k, v in state.items()}, self.lora_only)

    def weights_report(self) -> dict:
        """What a verified ack carries: ``checksum`` (:meth:`weights_checksum`, compared with the
        trainer's); a server whose weights also live elsewhere (a vLLM engine) adds
        ``engine_matches``: whether that copy equals the served one converted its way."""
        return {"checksum": self.weights_checksum()}

    def weights_checksum(self) -> str:
        """Checksum of the tensors this actor serves with (adapters only under LoRA)."""
        from fnsft.models.weights import policy_weights, weights_checksum

        return weights_checksum(policy_weights(self.model, self.lora_only))

    def get_weights(self) -> dict:
        """The served tensors as numpy (tests compare them with the trainer's)."""
        from fnsft.models.weights import policy_weights
        from fnsft.models.weights import state_dict_to_numpy

        return state_dict_to_numpy(policy_weights(self.model, self.lora_only))


ACK_TIMEOUT_S = 600.0  # the longest a weight load may take before the stage stops (no hang)


def count_mismatches(acks: list[dict], local: str) -> float:
    """Acks whose weights differ from the trainer's checksum ``local``, or whose engine (vLLM)
    does not hold them (:meth:`ModelServer.weights_report`)."""
    return float(sum(a["checksum"] != local or not a.get("engine_matches", True) for a in acks))


def _get(refs: list, what: str, timeout_s: float) -> list:
    """``ray.get`` with a bound: a role actor that never answers stops the stage with one line."""
    import ray

    from fnsft.errors import StageError

    try:
        return ray.get(refs, timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
        raise StageError(f"{what}: no answer from the generation actors within {timeout_s:g}s") from None


def push_policy_weights(group, policy, lora_only: bool, version: int, verify: bool = False,
                        wait: bool = True) -> dict[str, Any]:
    """Send ``policy``'s weights (adapters only with ``lora_only``) to every actor of ``group``.

    One ``ray.put`` of numpy arrays, read zero-copy by every actor on the node. With ``wait``
    (or ``verify``) it returns once all replicas have acknowledged
    (:meth:`ModelServer.load_weights`); the sync time, the megabytes sent, the slowest actor's
    load time and, with ``verify``, how many actors' checksums differ from the trainer's.
    Without ``wait``: it returns once the calls are sent, with their pending acks under ``"acks"``, the
    object ref under ``"ref"`` and, with ``verify``, the trainer's checksum under ``"checksum"``
    (:class:`WeightPusher` pipelines pushes this way and re-sends ``ref`` after a restart).
    """
    import ray

    from fnsft.models.weights import nbytes, policy_weights, weights_checksum
    from fnsft.models.weights import state_dict_to_numpy

    t0 = time.perf_counter()
    state = policy_weights(policy, lora_only)
    packed = state_dict_to_numpy(state)
    ref = ray.put(packed)
    pending = [a.load_weights.remote(ref, version, verify) for a in group.actors]
    out: dict[str, Any] = {"weight_sync_mb": nbytes(packed) / 2**20}
    local = weights_checksum(state) if verify else None
    if not wait:
        out.update(weight_sync_s=time.perf_counter() - t0, acks=pending, ref=ref, checksum=local)
        return out
    acks = _get(pending, "weight push", ACK_TIMEOUT_S)
    out.update(weight_sync_s=time.perf_counter() - t0, weight_load_s=max(a["load_s"] for a in acks))
    if verify:
        out["weight_sync_mismatches"] = count_mismatches(acks, local)
    return out


class WeightPusher:
    """Rank 0's weight pushes to the generation group, without waiting for each acknowledgement.

    An actor runs the calls of one caller in the order they were sent, so the next rollout's
    ``generate`` runs after the ``load_weights`` sent before it: waiting for the ack in between
    only adds a round trip per iteration (the actor loads while the trainer records the
    iteration). The acks are collected at the next push and by :meth:`settle` (before the
    weights are handed back), so a failed load still stops the stage. ``verify`` pushes (tests)
    wait, as they compare checksums at once.

    The pusher keeps the last push (object ref + version) in the open, so that after Ray
    restarted a generation actor (its node was lost) :meth:`resync` sends it the current weights
    before it serves again; until then the actor refuses to generate (:class:`StaleWeightsError`).
    """

    def __init__(self, group, lora_only: bool, verify: bool = False, timeout_s: float = ACK_TIMEOUT_S):
        self.group, self.lora_only, self.verify, self.timeout_s = group, lora_only, verify, timeout_s
        self.pending: list = []
        self.ref = None  # the last pushed weights in the object store (None: the handle's, version 0)
        self.version = 0
        self.checksum: str | None = None  # the trainer's checksum of ``ref`` (verify only)

    def push(self, policy, version: int) -> dict[str, float]:
        """Send ``policy``'s weights as ``version``; the stats of :func:`push_policy_weights`
        (``weight_load_s``: the previous push's slowest load)."""
        t0 = time.perf_counter()
        acks = self.settle()
        out = push_policy_weights(self.group, policy, self.lora_only, version, self.verify, wait=False)
        self.pending, self.ref, self.version = out.pop("acks"), out.pop("ref"), version
        self.checksum = out.pop("checksum")
        if self.verify:  # tests: compare the checksums at once
            acks_now = self.settle()
            out["weight_sync_mismatches"] = count_mismatches(acks_now, self.checksum)
        out["weight_sync_s"] = time.perf_counter() - t0
        if acks:
            out.setdefault("weight_load_s", max(a["load_s"] for a in acks))
        return out

    def settle(self) -> list[dict]:
        """Wait (bounded) for the pushes still unacknowledged; their acks. An actor that died
        meanwhile gives no ack (Ray restarts it; :meth:`resync` brings it up to date); any
        other error of a load stops the stage."""
        import ray

        pending, self.pending = self.pending, []
        acks = []
        for ref in pending:
            try:
                acks += _get([ref], "weight push", self.timeout_s)
            except ray.exceptions.RayActorError:
                pass
        return acks

    def resync(self) -> dict[str, float]:
        """After a role actor failed: wait (bounded) until every generation actor is back, and
        push the current weights to each one that holds others (or mark the handle's weights
        current before the first push). Returns ``weight_resyncs`` (actors brought up to date)
        and, with ``verify``, ``weight_sync_mismatches`` among them."""
        self.settle()
        self.group.wait_ready(self.timeout_s)
        held = _get([a.weights_version.remote() for a in self.group.actors], "weights version", self.timeout_s)
        stale = [a for a, h in zip(self.group.actors, held) if h["restarted"] or h["version"] != self.version]
        if self.ref is None:
            acks = _get([a.mark_current.remote(self.verify) for a in stale], "weight resync", self.timeout_s)
        else:
            acks = _get([a.load_weights.remote(self.ref, self.version, self.verify) for a in stale],
                        "weight resync", self.timeout_s)
        out = {"weight_resyncs": float(len(stale))}
        if self.verify and acks:
            local = self.checksum
            if local is None:  # nothing pushed yet: compare the replicas with each other
                local = acks[0]["checksum"]
            out["weight_sync_mismatches"] = count_mismatches(acks, local)
        return out
