"""The generation role: sample completions from the current policy (YAML ``rl.generation``).

A :class:`GenerationActor` holds its own copy of the policy. HF ``generate`` (batched, CPU or
GPU) is the engine unless ``engine: vllm`` asks for vLLM (:mod:`fnsft.actors.vllm_engine`);
``auto`` never picks vLLM silently, since only the HF path is tested here. After each update the trainer pushes new weights with
:meth:`load_weights` — only the LoRA adapters when the policy trains LoRA.

The class is plain Python; :class:`fnsft.actors.group.ActorGroup` makes it a Ray actor.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Optional

log = logging.getLogger("fnsft.actors")


def runs(items: list) -> tuple[list[int], list[int]]:
    """Start index and length of each run of equal consecutive items: ``[a, a, b] -> ([0, 2], [2, 1])``."""
    starts = [i for i in range(len(items)) if i == 0 or items[i] != items[i - 1]]
    return starts, [b - a for a, b in zip(starts, starts[1:] + [len(items)])]


class GenerationActor:
    """Sample completions for prompts; receive new policy weights.

    Args:
        model: the stage's incoming :class:`~fnsft.models.handle.ModelHandle`.
        lora: a PEFT ``LoraConfig`` when the trainer trains adapters (the actor wraps its copy
            the same way, so adapter names match), else ``None``.
        engine: ``hf``, ``vllm`` or ``auto`` (= ``hf``; vLLM only when asked by name).
        apply_chat_template: format string prompts as a user turn with the chat template.
        chat_template: a template to use instead of the tokenizer's.
        batch_size: HF generation micro-batch (memory bound); 0 = all at once.
        replica: this actor's index in its group (set by ActorGroup).
    """

    def __init__(self, model, lora=None, engine: str = "auto", apply_chat_template: bool = True,
                 chat_template: Optional[str] = None, batch_size: int = 0, dtype: str = "auto",
                 vllm_kwargs: Optional[dict] = None, replica: int = 0):
        import torch

        from fnsft.distributed.hf_worker import _quiet_libraries
        from fnsft.models.loading import load_tokenizer, resolve_torch_dtype

        _quiet_libraries()
        self.replica = replica
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = resolve_torch_dtype(dtype, self.device.type == "cuda")
        self.tokenizer = load_tokenizer(model.source, model.trust_remote_code, chat_template)
        self.apply_chat_template = apply_chat_template
        self.batch_size = batch_size
        self.lora_only = lora is not None
        self.engine = "vllm" if engine == "vllm" else "hf"
        self.model = model.load(dtype=self.dtype)
        if lora is not None:
            from peft import get_peft_model

            self.model = get_peft_model(self.model, lora)
        self.model.to(self.device).eval()
        self.eos_ids = None
        self.llm = None
        if self.engine == "vllm":
            self._start_vllm(model, vllm_kwargs or {})
        from fnsft.actors.modeling import eos_token_ids

        self.eos_ids = eos_token_ids(self.model, self.tokenizer)
        self.version = 0

    def ready(self) -> bool:
        return True

    # Generation -------------------------------------------------------------------------
    def generate(self, prompts: list, sampling: dict, seed: Optional[int] = None) -> dict[str, list]:
        """Sample one completion per prompt (repeat a prompt for several).

        ``sampling``: ``max_new_tokens``, ``temperature`` (0: greedy), ``top_p``, ``top_k``.
        Returns lists aligned with ``prompts``: ``prompt_ids``, ``completion_ids`` (cut after
        EOS), ``texts`` (decoded completions without special tokens), ``truncated`` (no EOS
        within ``max_new_tokens``).
        """
        from fnsft.actors.modeling import encode_prompts

        # A group's copies of one prompt sit side by side: encode (chat template) each run once.
        starts, counts = runs(prompts)
        unique = encode_prompts(self.tokenizer, [prompts[i] for i in starts], self.apply_chat_template)
        prompt_ids = [ids for ids, n in zip(unique, counts) for _ in range(n)]
        if self.engine == "vllm":
            completions = self._generate_vllm(prompt_ids, sampling, seed)
        else:
            completions = []
            step = self.batch_size or len(prompt_ids)
            for start in range(0, len(prompt_ids), step):
                completions += self._generate_hf(prompt_ids[start:start + step], sampling,
                                                 None if seed is None else seed + start)
        texts = self.tokenizer.batch_decode(completions, skip_special_tokens=True)
        truncated = [not (c and c[-1] in self.eos_ids) for c in completions]
        return {"prompt_ids": prompt_ids, "completion_ids": completions, "texts": texts, "truncated": truncated}

    def _generate_hf(self, prompt_ids: list[list[int]], sampling: dict, seed: Optional[int]) -> list[list[int]]:
        """HF ``generate`` on one micro-batch; each distinct prompt is prefilled once.

        A GRPO batch holds every prompt ``num_generations`` times in a row. The prompt's KV
        cache does not depend on what is sampled after it, so consecutive copies share one
        prefill: the unique prompts (minus their last token) run through the model once, the
        cache is expanded to every copy, and ``generate`` continues from it. Causal attention
        makes this exactly the prefill ``generate`` would have done per row (vLLM's prefix
        caching does the same on GPU).
        """
        import torch

        from fnsft.actors.modeling import cut_at_eos, pad_sequences

        pad_id = self.tokenizer.pad_token_id
        starts, counts = runs(prompt_ids)
        ids, mask = pad_sequences([prompt_ids[i] for i in starts], pad_id, "left")
        ids = torch.as_tensor(ids, device=self.device)
        mask = torch.as_tensor(mask, device=self.device)
        temperature = float(sampling.get("temperature", 1.0))
        kwargs: dict[str, Any] = dict(
            max_new_tokens=int(sampling.get("max_new_tokens", 32)), do_sample=temperature > 0,
            pad_token_id=pad_id, eos_token_id=sorted(self.eos_ids), use_cache=True)
        if temperature > 0:
            kwargs.update(temperature=temperature, top_p=float(sampling.get("top_p", 1.0)),
                          top_k=int(sampling.get("top_k", 0)))  # 0 disables top-k (not the model's default 50)
        with torch.no_grad():
            if len(starts) < len(prompt_ids) and ids.shape[1] > 1:
                index = torch.repeat_interleave(torch.arange(len(starts), device=self.device),
                                                torch.as_tensor(counts, device=self.device))
                kwargs["past_key_values"] = self._prefill(ids[:, :-1], mask[:, :-1], index)
                ids, mask = ids[index], mask[index]
            if seed is not None:
                torch.manual_seed(seed)
            out = self.model.generate(input_ids=ids, attention_mask=mask, **kwargs)
        new = out[:, ids.shape[1]:].tolist()
        return [cut_at_eos(row, self.eos_ids, pad_id) for row in new]

    def _prefill(self, ids, mask, index):
        """KV cache of left-padded ``ids`` (positions as ``generate`` counts them), rows repeated by ``index``."""
        position_ids = mask.long().cumsum(-1) - 1
        position_ids.masked_fill_(mask == 0, 1)
        cache = self.model(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=True).past_key_values
        cache.reorder_cache(index)
        return cache

    # Weights ----------------------------------------------------------------------------
    def load_weights(self, packed: dict, version: int = 0, checksum: bool = False) -> dict:
        """Load pushed policy weights (numpy arrays from the object store); returns an ack.

        ``packed`` is :func:`fnsft.models.weights.state_dict_to_numpy` of the adapters (LoRA)
        or the full state dict. The ack carries the load time and, if asked, a checksum of
        what this actor now holds (tests compare it with the trainer's).
        """
        from fnsft.actors.modeling import load_policy_weights
        from fnsft.models.weights import numpy_to_state_dict

        import warnings

        t0 = time.perf_counter()
        with warnings.catch_warnings():  # read-only views of the object store; we only copy_ from them
            warnings.simplefilter("ignore", UserWarning)
            state = numpy_to_state_dict(packed, copy=False)
        if self.engine == "vllm":
            self._load_vllm(state)
        else:
            load_policy_weights(self.model, {k: v.to(self.device) for k, v in state.items()}, self.lora_only)
        self.version = version
        ack = {"replica": self.replica, "version": version, "load_s": time.perf_counter() - t0}
        if checksum:
            ack["checksum"] = self.weights_checksum()
            ack["checksum_of"] = self.engine  # vllm: the engine's own weights (its names)
        return ack

    def weights_checksum(self) -> str:
        """Checksum of the policy tensors this actor generates with (adapters only under LoRA);
        with vLLM, computed by the engine over the weights it holds."""
        from fnsft.actors.modeling import policy_weights, weights_checksum

        if self.engine == "vllm":
            from fnsft.actors import vllm_engine

            return vllm_engine.checksum(self.llm)
        return weights_checksum(policy_weights(self.model, self.lora_only))

    def get_weights(self) -> dict:
        """The policy tensors as numpy (tests compare them with the trainer's)."""
        from fnsft.actors.modeling import policy_weights
        from fnsft.models.weights import state_dict_to_numpy

        return state_dict_to_numpy(policy_weights(self.model, self.lora_only))

    # vLLM (GPU only; not exercised by the CPU test suite) -----------------------------------
    def _start_vllm(self, model, vllm_kwargs: dict) -> None:
        import os
        import tempfile

        from fnsft.actors import vllm_engine

        path = model.weights_dir if model.weights is None else model.materialize(tempfile.mkdtemp(prefix="fnsft_vllm_"))
        if not os.path.isfile(os.path.join(path, "tokenizer_config.json")):
            self.tokenizer.save_pretrained(path)
        self.llm = vllm_engine.start(path, str(self.dtype).replace("torch.", ""), vllm_kwargs)

    def _generate_vllm(self, prompt_ids: list[list[int]], sampling: dict, seed: Optional[int]) -> list[list[int]]:
        from fnsft.actors import vllm_engine

        return vllm_engine.generate(self.llm, prompt_ids, sampling, seed)

    def _load_vllm(self, state: dict) -> None:
        """vLLM takes full HF-named weights: merge pushed adapters into our HF copy first."""
        from fnsft.actors import vllm_engine
        from fnsft.actors.modeling import load_policy_weights

        load_policy_weights(self.model, {k: v.to(self.device) for k, v in state.items()}, self.lora_only)
        if self.lora_only:
            self.model.merge_adapter()
            full = {k.replace("base_model.model.", "").replace(".base_layer", ""): v
                    for k, v in self.model.state_dict().items() if "lora_" not in k}
            self.model.unmerge_adapter()
        else:
            full = self.model.state_dict()
        vllm_engine.load_weights(self.llm, full)


def push_policy_weights(generation, policy, lora_only: bool, version: int, verify: bool = False) -> dict[str, float]:
    """Send ``policy``'s weights (adapters only with ``lora_only``) to every actor of ``generation``.

    One ``ray.put`` of numpy arrays, read zero-copy by every actor on the node; returns once all
    replicas have acknowledged. Returns the sync time, the megabytes sent, the slowest actor's
    load time and, with ``verify``, how many actors' checksums differ from the trainer's.
    """
    import ray

    from fnsft.actors.modeling import nbytes, policy_weights, weights_checksum
    from fnsft.models.weights import state_dict_to_numpy

    t0 = time.perf_counter()
    state = policy_weights(policy, lora_only)
    packed = state_dict_to_numpy(state)
    ref = ray.put(packed)
    acks = generation.all(lambda a: a.load_weights.remote(ref, version, verify))
    out = {"weight_sync_s": time.perf_counter() - t0, "weight_sync_mb": nbytes(packed) / 2**20,
           "weight_load_s": max(a["load_s"] for a in acks)}
    if verify:
        local = weights_checksum(state)
        hf = [a["checksum"] for a in acks if a.get("checksum_of") != "vllm"]
        engine = {a["checksum"] for a in acks if a.get("checksum_of") == "vllm"}
        # vLLM names weights its own way: its replicas must agree with each other.
        out["weight_sync_mismatches"] = float(sum(c != local for c in hf) + max(len(engine) - 1, 0))
    return out
