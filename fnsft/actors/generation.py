"""The generation role: sample completions from the current policy (YAML ``rl.generation``).

A :class:`GenerationActor` holds its own copy of the policy. HF ``generate`` (batched, CPU or
GPU) is the engine unless ``engine: vllm`` asks for vLLM (:mod:`fnsft.actors.vllm_engine`);
``auto`` never picks vLLM silently, since only the HF path is tested here. After each update the trainer pushes new weights with
:meth:`load_weights` — only the LoRA adapters when the policy trains LoRA.

A :class:`~fnsft.actors.serving.ModelServer` (weight pushes, checksums); plain Python that
:class:`fnsft.actors.group.ActorGroup` makes a Ray actor.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from fnsft.actors.serving import ModelServer

log = logging.getLogger("fnsft.actors")


def runs(items: list) -> tuple[list[int], list[int]]:
    """Start index and length of each run of equal consecutive items: ``[a, a, b] -> ([0, 2], [2, 1])``."""
    starts = [i for i in range(len(items)) if i == 0 or items[i] != items[i - 1]]
    return starts, [b - a for a, b in zip(starts, starts[1:] + [len(items)])]


class GenerationActor(ModelServer):
    """Sample completions for prompts; receive new policy weights (a :class:`ModelServer`).

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
        from fnsft.actors.modeling import eos_token_ids
        from fnsft.models.loading import load_tokenizer

        super().__init__(model, dtype=dtype, batch_size=batch_size, lora=lora, replica=replica)
        self.tokenizer = load_tokenizer(model.source, model.trust_remote_code, chat_template)
        self.apply_chat_template = apply_chat_template
        self.engine = "vllm" if engine == "vllm" else "hf"
        self.llm = None
        if self.engine == "vllm":
            self._start_vllm(model, vllm_kwargs or {})
        self.eos_ids = eos_token_ids(self.model, self.tokenizer)

    # Generation -------------------------------------------------------------------------
    def generate(self, prompts: list, sampling: dict, seed: Optional[int] = None) -> dict[str, list]:
        """Sample one completion per prompt (repeat a prompt for several).

        ``sampling``: ``max_new_tokens``, ``temperature`` (0: greedy), ``top_p``, ``top_k``.
        Returns lists aligned with ``prompts``: ``prompt_ids``, ``completion_ids`` (cut after
        EOS), ``texts`` (decoded completions without special tokens), ``truncated`` (no EOS
        within ``max_new_tokens``); and ``span``, this call's ``[start, end]`` wall clock (the
        rollout compares it with the reward actor's to show scoring overlapping generation).
        """
        import time

        from fnsft.actors.modeling import encode_prompts

        started = time.time()
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
        return {"prompt_ids": prompt_ids, "completion_ids": completions, "texts": texts, "truncated": truncated,
                "span": [started, time.time()]}

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

    # Weights (load_weights, weights_checksum, get_weights: ModelServer) ------------------
    def install_weights(self, state: dict) -> None:
        if self.engine == "vllm":
            self._load_vllm(state)
        else:
            super().install_weights(state)

    def weights_checksum(self) -> str:
        """With vLLM: computed by the engine over the weights it generates with (its names)."""
        if self.engine == "vllm":
            from fnsft.actors import vllm_engine

            return vllm_engine.checksum(self.llm)
        return super().weights_checksum()

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
