"""vLLM inside a :class:`~fnsft.actors.generation.GenerationActor` (``rl.generation.engine: vllm``).

GPU only, and chosen only when asked: ``engine: auto`` means HF ``generate`` (the path the
suite tests). Everything goes through vLLM's public API:

- weights: :class:`WeightSync` is passed as ``worker_extension_cls``; its methods run inside
  every engine worker through ``LLM.collective_rpc`` (vLLM's RLHF examples do the same) and
  call the model's own ``load_weights`` with HF-named tensors;
- checksum: computed by the engine workers over the weights they generate with (vLLM's
  names: fused ``qkv_proj``/``gate_up_proj``, so comparable between replicas and versions,
  not with the trainer's HF state dict).
"""

from __future__ import annotations

from typing import Optional

EXTENSION = "fnsft.actors.vllm_engine.WeightSync"


class WeightSync:
    """vLLM worker extension: methods called with ``llm.collective_rpc("fnsft_...")``."""

    def fnsft_load_weights(self, named_arrays: list) -> int:
        import torch

        weights = [(name, torch.from_numpy(arr)) for name, arr in named_arrays]
        self.model_runner.model.load_weights(weights=weights)
        return len(weights)

    def fnsft_checksum(self) -> str:
        from fnsft.actors.modeling import weights_checksum

        return weights_checksum(dict(self.model_runner.model.named_parameters()))


def start(path: str, dtype: str, vllm_kwargs: dict):
    """An ``LLM`` on ``path`` with the weight-sync extension in each of its workers."""
    from vllm import LLM

    kwargs = {"gpu_memory_utilization": 0.3, "enable_prefix_caching": True, **vllm_kwargs}
    return LLM(model=path, dtype=dtype, worker_extension_cls=EXTENSION, **kwargs)


def generate(llm, prompt_ids: list[list[int]], sampling: dict, seed: Optional[int]) -> list[list[int]]:
    from vllm import SamplingParams

    params = SamplingParams(
        max_tokens=int(sampling.get("max_new_tokens", 32)), temperature=float(sampling.get("temperature", 1.0)),
        top_p=float(sampling.get("top_p", 1.0)), top_k=int(sampling.get("top_k", 0)) or -1, seed=seed)
    outs = llm.generate([{"prompt_token_ids": p} for p in prompt_ids], params, use_tqdm=False)
    return [list(o.outputs[0].token_ids) for o in outs]


def load_weights(llm, full_state: dict) -> None:
    """Push HF-named full weights (torch tensors) into every engine worker; drop stale prefixes."""
    named = [(k, v.detach().cpu().contiguous().numpy() if str(v.dtype) != "torch.bfloat16"
              else v.detach().float().cpu().numpy()) for k, v in full_state.items()]
    llm.collective_rpc("fnsft_load_weights", args=(named,))
    llm.reset_prefix_cache()  # cached KV blocks were computed with the old weights


def checksum(llm) -> str:
    """The engine's own checksum (worker 0; tensor-parallel workers each hold a shard)."""
    return llm.collective_rpc("fnsft_checksum")[0]
