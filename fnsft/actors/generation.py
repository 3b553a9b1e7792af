"""The generation role: sample completions from the current policy (YAML ``rl.generation``).

A :class:`GenerationActor` holds its own copy of the policy. HF ``generate`` (batched, CPU or
GPU) is the engine unless ``engine: vllm`` asks for vLLM (:mod:`fnsft.actors.vllm_engine`; the
stage resolves ``auto`` with :func:`fnsft.actors.vllm_runtime.choose_engine` and passes ``hf`` or
``vllm``; ``auto`` reaching the actor means ``hf``). After each update the trainer pushes new weights with
:meth:`load_weights` — only the LoRA adapters when the policy trains LoRA; with vLLM the actor
merges them into its HF copy and loads the full weights into the engine.

A :class:`~fnsft.actors.serving.ModelServer` (weight pushes, checksums); plain Python that
:class:`fnsft.actors.group.ActorGroup` makes a Ray actor.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

from fnsft.actors.serving import ModelServer, StaleWeightsError

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
        engine: ``hf`` or ``vllm`` (``auto`` = ``hf``: the stage resolves ``auto`` first).
        apply_chat_template: format string prompts as a user turn with the chat template.
        chat_template: a template to use instead of the tokenizer's.
        batch_size: HF generation micro-batch (memory bound); 0 = all at once.
        follows_policy: the trainer pushes its weights here (the RL loop's actors): after Ray
            restarted this actor, :meth:`generate` refuses (:class:`StaleWeightsError`) until a
            push or ``mark_current`` arrives, so a rollout never samples from stale weights.
        replica: this actor's index in its group (set by ActorGroup).
    """

    def __init__(self, model, lora=None, engine: str = "auto", apply_chat_template: bool = True,
                 chat_template: Optional[str] = None, batch_size: int = 0, dtype: str = "auto",
                 vllm_kwargs: Optional[dict] = None, follows_policy: bool = False, replica: int = 0):
        from fnsft.models.tokens import eos_token_ids
        from fnsft.models.loading import load_tokenizer

        super().__init__(model, dtype=dtype, batch_size=batch_size, lora=lora, replica=replica)
        self.tokenizer = load_tokenizer(model.source, model.trust_remote_code, chat_template)
        self.apply_chat_template = apply_chat_template
        self.follows_policy = follows_policy
        self.engine = "vllm" if engine == "vllm" else "hf"
        self.llm = None
        self.engine_layout: Optional[dict] = None  # vLLM's parameter names/shapes (engine checksums)
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
        rollout compares it with the reward actor's to show scoring overlapping generation);
        ``version``, the pushed policy version it sampled with. With ``sampling["return_logprobs"]``
        (asynchronous rollouts) also ``logprobs``: per completion token, the log-prob of the
        sampled token under the distribution it was drawn from (temperature, top-k/top-p applied)
        — the behaviour policy of :mod:`fnsft.rl.off_policy`.
        """
        import time

        from fnsft.models.tokens import encode_prompts

        started = time.time()
        # A group's copies of one prompt sit side by side: encode (chat template) each run once.
        starts, counts = runs(prompts)
        unique = encode_prompts(self.tokenizer, [prompts[i] for i in starts], self.apply_chat_template)
        prompt_ids = [ids for ids, n in zip(unique, counts) for _ in range(n)]
        return {"prompt_ids": prompt_ids, **self.generate_ids(prompt_ids, sampling, seed, started)}

    def generate_ids(self, prompt_ids: list[list[int]], sampling: dict, seed: Optional[int] = None,
                     started: Optional[float] = None) -> dict[str, list]:
        """:meth:`generate` from prompts already tokenized (a multi-turn episode's transcript so
        far, :mod:`fnsft.envs.rollout`); the same answer without ``prompt_ids``."""
        import time

        if self.follows_policy and self.restarted:
            raise StaleWeightsError(f"generation replica {self.replica} was restarted and has not received "
                                    "the policy's current weights yet")
        started = time.time() if started is None else started
        logprobs: list[list[float]] = []
        if self.engine == "vllm":
            from fnsft.actors import vllm_engine

            completions, logprobs = vllm_engine.generate(self.llm, prompt_ids, sampling, seed, sorted(self.eos_ids))
        else:
            completions = []
            step = self.batch_size or len(prompt_ids)
            for start in range(0, len(prompt_ids), step):
                ids, lps = self._generate_hf(prompt_ids[start:start + step], sampling,
                                             None if seed is None else seed + start)
                completions += ids
                logprobs += lps
        texts = self.tokenizer.batch_decode(completions, skip_special_tokens=True)
        truncated = [not (c and c[-1] in self.eos_ids) for c in completions]
        out = {"completion_ids": completions, "texts": texts, "truncated": truncated, "span": [started, time.time()],
               "version": self.version}
        if sampling.get("return_logprobs"):
            out["logprobs"] = logprobs
        return out

    def _generate_hf(self, prompt_ids: list[list[int]], sampling: dict,
                     seed: Optional[int]) -> tuple[list[list[int]], list[list[float]]]:
        """HF ``generate`` on one micro-batch; each distinct prompt is prefilled once. Returns the
        completions and, with ``sampling["return_logprobs"]``, their tokens' log-probs (else ``[]``).

        A GRPO batch holds every prompt ``num_generations`` times in a row. The prompt's KV
        cache does not depend on what is sampled after it, so consecutive copies share one
        prefill: the unique prompts (minus their last token) run through the model once, the
        cache is expanded to every copy, and ``generate`` continues from it. Causal attention
        makes this exactly the prefill ``generate`` would have done per row (vLLM's prefix
        caching does the same on GPU).
        """
        import torch

        from fnsft.models.tokens import cut_at_eos, pad_sequences

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
            if sampling.get("return_logprobs"):
                # generate's processed scores are the logits after temperature and top-k/top-p, the
                # distribution the token was drawn from; compute_transition_scores log-softmaxes them.
                kwargs.update(output_scores=True, return_dict_in_generate=True)
            out = self.model.generate(input_ids=ids, attention_mask=mask, **kwargs)
        if sampling.get("return_logprobs"):
            sequences = out.sequences
            scores = self.model.compute_transition_scores(sequences, out.scores, normalize_logits=True)
            token_lps = scores.float().cpu().tolist()
        else:
            sequences, token_lps = out, []
        new = sequences[:, ids.shape[1]:].tolist()
        completions = [cut_at_eos(row, self.eos_ids, pad_id) for row in new]
        return completions, [lps[:len(c)] for lps, c in zip(token_lps, completions)]

    def _prefill(self, ids, mask, index):
        """KV cache of left-padded ``ids`` (positions as ``generate`` counts them), rows repeated by ``index``."""
        position_ids = mask.long().cumsum(-1) - 1
        position_ids.masked_fill_(mask == 0, 1)
        cache = self.model(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=True).past_key_values
        cache.reorder_cache(index)
        return cache

    # Weights (load_weights, weights_checksum, get_weights: ModelServer) ------------------
    def install_weights(self, state: dict) -> None:
        """Into the HF copy; with vLLM then the full weights into the engine."""
        super().install_weights(state)
        if self.engine == "vllm":
            from fnsft.actors import vllm_engine

            vllm_engine.load_weights(self.llm, self._full_state())

    def weights_report(self) -> dict:
        """The HF copy's checksum (compared with the trainer's) and, with vLLM, whether the engine
        holds that copy's full weights converted as its ``load_weights`` converts them."""
        report = super().weights_report()
        if self.engine == "vllm":
            from fnsft.actors import vllm_engine

            probe = self.tokenizer("What is 12 + 30? The answer is 42. Thank you!")["input_ids"]
            report["engine_matches"] = vllm_engine.matches(self.llm, self._full_state(), self.engine_layout,
                                                           probe, self._probe_logprobs(probe))
        return report

    def _probe_logprobs(self, ids: list[int]) -> list[float]:
        """The HF copy's log-prob of each of ``ids[1:]`` (what the engine must compute too)."""
        import torch

        with torch.no_grad():
            logits = self.model(input_ids=torch.as_tensor([ids], device=self.device)).logits[0, :-1].float()
        lps = torch.log_softmax(logits, -1).gather(-1, torch.as_tensor(ids[1:], device=self.device)[:, None])
        return lps[:, 0].cpu().tolist()

    # vLLM ---------------------------------------------------------------------------------
    def _start_vllm(self, model, vllm_kwargs: dict) -> None:
        import os
        import shutil
        import tempfile

        from fnsft.actors import vllm_engine

        tmp = tempfile.mkdtemp(prefix="fnsft_vllm_")
        try:  # the handle's folder, or (weights in memory, a LoRA rebuild) a copy written to tmp
            path = model.materialize(tmp)
            if not os.path.isfile(os.path.join(path, "tokenizer_config.json")):
                vllm_kwargs = {"tokenizer": model.source, **vllm_kwargs}  # weights-only folder
            self.llm = vllm_engine.start(path, str(self.dtype).replace("torch.", ""), vllm_kwargs, self.device.type)
        finally:  # the engine has loaded everything: a copy per (re)start would fill the disk
            shutil.rmtree(tmp, ignore_errors=True)
        self.engine_layout = vllm_engine.layout(self.llm)  # fixed for the engine's life

    def _full_state(self) -> dict:
        """The HF copy's full weights (HF names); under LoRA with the adapters merged in."""
        import torch

        if not self.lora_only:
            return self.model.state_dict()
        state = self.model.state_dict()
        # unmerge subtracts what merge added, in floating point: restore the exact base weights
        # instead, or every push would drift the base a little.
        base = {k: v.detach().clone() for k, v in state.items() if ".base_layer." in k}
        self.model.merge_adapter()
        try:
            return {k.replace("base_model.model.", "").replace(".base_layer", ""): v.detach().clone()
                    for k, v in self.model.state_dict().items() if "lora_" not in k}
        finally:
            self.model.unmerge_adapter()
            with torch.no_grad():
                for k, v in base.items():
                    state[k].copy_(v)
