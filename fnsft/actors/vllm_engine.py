"""vLLM inside a :class:`~fnsft.actors.generation.GenerationActor` (``rl.generation.engine: vllm``).

On a GPU, or on vLLM's CPU build in its own virtualenv (:mod:`fnsft.actors.vllm_runtime` picks
the interpreter). Everything goes through vLLM's public API, as its RLHF examples do:

- weights: :class:`WeightSync` is passed as ``worker_extension_cls``; its methods run inside
  every engine worker through ``LLM.collective_rpc`` and call the model's own ``load_weights``
  with HF-named tensors (vLLM fuses ``q/k/v_proj`` into ``qkv_proj`` and ``gate/up_proj`` into
  ``gate_up_proj`` while loading);
- verification (:func:`matches`): the engine workers hash the weights they hold;
  :func:`engine_view` converts HF-named weights the way ``load_weights`` does (the model's
  ``packed_modules_mapping``: the parts concatenated in order), so the two checksums are equal
  iff the engine holds exactly the pushed weights. vLLM's CPU build repacks linear weights into
  its GEMM kernels after loading and leaves those parameters empty: there the engine's log-probs
  of a fixed probe must also equal the HF copy's (≈1e-6 apart in fp32; a missed push moves them
  by ≈0.1-0.5);
- behaviour log-probs: ``SamplingParams(logprobs=0)`` with ``logprobs_mode="processed_logprobs"``
  gives the log-prob of each sampled token under the distribution it was drawn from
  (temperature, top-k/top-p applied), as the HF path returns them.
"""

from __future__ import annotations

from typing import Optional, Sequence

EXTENSION = "fnsft.actors.vllm_engine.WeightSync"


class WeightSync:
    """vLLM worker extension: methods called with ``llm.collective_rpc("fnsft_...")``."""

    def fnsft_load_weights(self, named_arrays: list) -> int:
        """HF-named arrays through the worker's ``reload_weights``: the model's ``load_weights``,
        then its post-load processing again (the CPU build repacks every linear weight into its
        GEMM kernels' layout after loading; a bare ``load_weights`` would leave them stale)."""
        import torch

        weights = [(name, torch.from_numpy(arr)) for name, arr in named_arrays]
        self.reload_weights(weights_iterator=iter(weights), is_checkpoint_format=True)
        return len(weights)

    def fnsft_layout(self) -> dict:
        """``{"params": {name: (shape, dtype)}, "packed": packed_modules_mapping}`` of the served model."""
        model = self.model_runner.model
        params = {n: (tuple(p.shape), str(p.dtype)) for n, p in model.named_parameters()}
        return {"params": params, "packed": dict(getattr(model, "packed_modules_mapping", {}) or {})}

    def fnsft_checksum(self, shapes: Optional[dict] = None) -> str:
        """Checksum of the served weights; with ``shapes``, of those names only, each cut to its
        shape (vLLM pads the vocabulary of embeddings to a multiple of 64 rows)."""
        from fnsft.models.weights import weights_checksum

        params = dict(self.model_runner.model.named_parameters())
        if shapes is not None:
            params = {n: params[n][tuple(slice(0, s) for s in shape)] if n in params else None
                      for n, shape in shapes.items()}
            if any(p is None for p in params.values()):
                return "missing:" + ",".join(sorted(n for n, p in params.items() if p is None))
        return weights_checksum(params)


def start(path: str, dtype: str, vllm_kwargs: dict, device: str = "cuda"):
    """An ``LLM`` on ``path`` with the weight-sync extension in each of its workers."""
    from vllm import LLM

    kwargs = {"enable_prefix_caching": True, "logprobs_mode": "processed_logprobs"}
    if device == "cpu":
        # Eager start-up ≈55 s on 2 cores vs ≈3 min compiling graphs (FACTS.md); one in-process worker.
        kwargs.update(enforce_eager=True, distributed_executor_backend="uni")
    else:
        kwargs["gpu_memory_utilization"] = 0.3
    kwargs.update(vllm_kwargs)
    return LLM(model=path, dtype=dtype, worker_extension_cls=EXTENSION, **kwargs)


def sampling_params(sampling: dict, seed: Optional[int], n: int, stop_ids: Sequence[int] = ()) -> list:
    """One ``SamplingParams`` per row. A row's seed is ``seed + row``: a GRPO group repeats its
    prompt, and one seed for all rows would sample the same completion for every copy."""
    from vllm import SamplingParams

    temperature = float(sampling.get("temperature", 1.0))
    common = dict(max_tokens=int(sampling.get("max_new_tokens", 32)), temperature=temperature,
                  logprobs=0 if sampling.get("return_logprobs") else None, stop_token_ids=list(stop_ids))
    if temperature > 0:
        common.update(top_p=float(sampling.get("top_p", 1.0)), top_k=int(sampling.get("top_k", 0)) or -1)
    return [SamplingParams(**common, seed=None if seed is None else seed + i) for i in range(n)]


def generate(llm, prompt_ids: list[list[int]], sampling: dict, seed: Optional[int],
             stop_ids: Sequence[int] = ()) -> tuple[list[list[int]], list[list[float]]]:
    """Completions (token ids, ending with the EOS/stop token that ended them) and, with
    ``sampling["return_logprobs"]``, each sampled token's log-prob (else ``[]``)."""
    params = sampling_params(sampling, seed, len(prompt_ids), stop_ids)
    outs = llm.generate([{"prompt_token_ids": p} for p in prompt_ids], params, use_tqdm=False)
    completions = [list(o.outputs[0].token_ids) for o in outs]
    if not sampling.get("return_logprobs"):
        return completions, []
    logprobs = [[float(step[tok].logprob) for tok, step in zip(o.outputs[0].token_ids, o.outputs[0].logprobs)]
                for o in outs]
    return completions, logprobs


def load_weights(llm, full_state: dict) -> None:
    """Push HF-named full weights (torch tensors) into every engine worker."""
    named = [(k, _numpy(v)) for k, v in full_state.items()]
    llm.collective_rpc("fnsft_load_weights", args=(named,))
    llm.reset_prefix_cache()  # cached KV blocks were computed with the old weights


def _numpy(t):
    t = t.detach().cpu()
    return (t.float() if str(t.dtype) == "torch.bfloat16" else t).contiguous().numpy()


def layout(llm) -> dict:
    """The engine's parameter names/shapes/dtypes and fused-module mapping (worker 0)."""
    return llm.collective_rpc("fnsft_layout")[0]


def engine_view(hf_state: dict, engine_layout: dict) -> dict:
    """``hf_state`` (HF names, torch tensors) as the engine stores it: every engine parameter
    built from the HF tensors ``load_weights`` reads (fused ones concatenated along dim 0 in
    ``packed_modules_mapping`` order), cast to the engine's dtype. A tied ``lm_head`` reads the
    embedding. Raises KeyError naming an engine parameter no HF tensor makes."""
    import torch

    packed = engine_layout["packed"]
    out = {}
    for name, (_, dtype) in engine_layout["params"].items():
        parts = [name]
        for fused, subs in packed.items():
            if f".{fused}." in f".{name}":
                parts = [name.replace(fused, sub) for sub in subs]
                break
        if name == "lm_head.weight" and name not in hf_state:
            parts = ["model.embed_tokens.weight"]
        missing = [p for p in parts if p not in hf_state]
        if missing:
            raise KeyError(f"engine parameter {name}: no HF tensor {missing[0]}")
        tensors = [hf_state[p].detach().cpu() for p in parts]
        full = tensors[0] if len(tensors) == 1 else torch.cat(tensors, 0)
        out[name] = full.to(getattr(torch, dtype.replace("torch.", "")))
    return out


def checksum(llm, shapes: Optional[dict] = None) -> str:
    """The engine's own checksum (worker 0; tensor-parallel workers each hold a shard), over
    ``shapes``' names cut to those shapes when given."""
    return llm.collective_rpc("fnsft_checksum", args=(shapes,))[0]


def prompt_logprobs(llm, ids: list[int]) -> list[float]:
    """The engine's log-prob of each of ``ids[1:]`` after the ones before it (its real kernels)."""
    from vllm import SamplingParams

    out = llm.generate([{"prompt_token_ids": ids}], SamplingParams(max_tokens=1, prompt_logprobs=0),
                       use_tqdm=False)[0]
    return [float(step[tok].logprob) for tok, step in zip(ids[1:], out.prompt_logprobs[1:])]


def probe_tolerance(dtype: str) -> float:
    """Largest log-prob gap between the engine and the HF copy holding the same weights: fp32
    kernels agree to ≈1e-6 here, half precision to a few 1e-2; one update step moves them more."""
    return 1e-3 if "float32" in dtype else 1e-1


def matches(llm, hf_state: dict, engine_layout: dict, probe_ids: list[int], probe_logprobs: list[float]) -> bool:
    """Whether the engine generates with exactly ``hf_state``: the checksum of every parameter it
    keeps readable equals ``hf_state`` converted the way ``load_weights`` converts it; and where it
    repacked some into its kernels' own layout (the CPU build's linear layers: the parameter is
    left empty), its log-probs of ``probe_ids`` match the HF copy's (``probe_logprobs``)."""
    import math

    from fnsft.models.weights import weights_checksum

    params = engine_layout["params"]
    readable = {n: v for n, v in params.items() if math.prod(v[0]) > 0}
    try:
        expected = engine_view(hf_state, {"params": readable, "packed": engine_layout["packed"]})
    except KeyError:
        return False
    if checksum(llm, {n: tuple(t.shape) for n, t in expected.items()}) != weights_checksum(expected):
        return False
    if len(readable) == len(params):
        return True
    engine = prompt_logprobs(llm, probe_ids)
    dtype = next(iter(params.values()))[1]
    return max(abs(a - b) for a, b in zip(engine, probe_logprobs)) <= probe_tolerance(dtype)
