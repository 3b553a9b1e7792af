"""The forward pass every role and the learner share: completion log-probs (with the sampling
filter the generator used), entropy, values, and the critic's value head.

Batches follow :mod:`fnsft.models.tokens`' layout (left-padded prompts, right-padded completions).
"""

from __future__ import annotations

from fnsft.models.forward_args import forward_accepts




# Forward passes ------------------------------------------------------------------------
def sampling_filter(logits, top_k: int = 0, top_p: float = 1.0, keep=None):
    """``logits (N, V)`` with the tokens HF's top-k / top-p warpers drop set to ``-inf``.

    The same rules as ``generate`` (temperature already applied; top-k, then top-p, at least
    one token kept), so log-probs of sampled tokens are those of the distribution they were
    drawn from. ``keep (N,)``: a token id per row never dropped — the sampled one; after an
    update it may fall outside the new nucleus, and a ``-inf`` log-prob would make the
    importance ratio 0 and its log NaN.
    """
    import torch

    if top_k and 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        drop = logits < kth
    else:
        drop = torch.zeros_like(logits, dtype=torch.bool)
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits.masked_fill(drop, float("-inf")), dim=-1)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        sorted_drop = cum <= 1 - top_p
        sorted_drop[..., -1:] = False
        drop = drop | sorted_drop.scatter(-1, order, sorted_drop)
    if keep is not None:
        drop.scatter_(-1, keep.unsqueeze(-1), False)
    return logits.masked_fill(drop, float("-inf"))


def _token_logprobs(logits, ids, temperature: float, top_k: int, top_p: float, need_entropy: bool,
                    entropy_grad: bool = True):
    """Selective log-softmax (TRL's pattern): one row at a time in float32, so the full
    ``(B, C, V)`` float32 tensor is never built. Returns ``(logprobs (B, C), entropy or None)``."""
    import torch

    filtered = bool(top_k) or (top_p is not None and top_p < 1.0)
    lps, ents = [], []
    for row, row_ids in zip(logits, ids):  # row: (C, V) in the model's dtype
        z = row.float()
        if temperature and temperature != 1.0:
            z = z / temperature
        if filtered:
            z = sampling_filter(z, top_k, top_p, keep=row_ids)
        log_z = torch.logsumexp(z, dim=-1)
        lps.append(z.gather(-1, row_ids.unsqueeze(-1)).squeeze(-1) - log_z)
        if need_entropy:
            ents.append(_entropy(z, log_z, filtered) if entropy_grad else _entropy(z.detach(), log_z.detach(), filtered))
    return torch.stack(lps), (torch.stack(ents) if need_entropy else None)


def _entropy(z, log_z, filtered: bool):
    """``H = log Z - sum p z`` per row; filtered tokens have p = 0 and z = -inf: zero z there,
    since 0 * -inf is NaN (in the forward and in the gradient)."""
    import torch

    finite_z = z.masked_fill(torch.isinf(z), 0.0) if filtered else z
    return log_z - (torch.softmax(z, dim=-1) * finite_z).sum(-1)


def completion_forward(model, batch: dict, temperature: float = 1.0, value_head=None,
                       need_logits: bool = False, detach_value_input: bool = False,
                       need_hidden: bool = False, need_entropy: bool = False,
                       top_k: int = 0, top_p: float = 1.0, entropy_grad: bool = True,
                       share_prompts: bool = True) -> dict:
    """Score the completions of a padded batch in one forward pass.

    ``batch`` holds torch tensors ``prompt_ids, prompt_mask, completion_ids, completion_mask``
    (and ``completion_attention`` for multi-turn episodes: tokens attended but not scored).
    Returns ``logprobs (B, C)`` of the sampled tokens under the distribution they were sampled
    from: ``softmax(logits / temperature)`` restricted by ``top_k`` / ``top_p`` (YAML
    ``rl.generation`` sampling; 0 / 1.0 = off) exactly as ``generate`` restricts it.
    Optional: ``entropy (B, C)`` per token when ``need_entropy`` (the bonus; no ``(B, C, V)``
    tensor kept; ``entropy_grad=False``: a logged stat only, no graph), ``logits (B, C, V)`` float32 when ``need_logits`` (temperature applied, not
    filtered; TRPO's KL), ``values (B, C)`` when a ``value_head`` is given (the value of the
    state before each token, computed in the head's dtype; ``detach_value_input`` keeps the
    critic's gradient out of the policy, as TRPO needs), and ``hidden (B, C, H)`` (the last
    hidden states the critic reads) when ``need_hidden``. Rows that repeat a prompt share one
    pass over it (``share_prompts``; :mod:`fnsft.models.shared_prompt`), same logits.
    """
    import torch

    from fnsft.models.shared_prompt import can_share, shared_prompt_logits

    p_ids, c_ids = batch["prompt_ids"], batch["completion_ids"]
    input_ids = torch.cat([p_ids, c_ids], dim=1)
    # Multi-turn episodes (fnsft.envs) attend to environment/tool tokens the loss masks out.
    attention = torch.cat([batch["prompt_mask"], attended(batch)], dim=1)
    # Left padding: positions count real tokens only, as during generation.
    position_ids = (attention.cumsum(-1) - 1).clamp(min=0)
    P, C = p_ids.shape[1], c_ids.shape[1]
    raw = None
    full_pass_needed = value_head is not None or need_hidden  # every position's hidden state
    if share_prompts and not full_pass_needed and can_share(model, batch):
        # A repeated prompt (GRPO's num_generations) runs once (fnsft.models.shared_prompt).
        raw = shared_prompt_logits(model, batch, position_ids)
    if raw is None:
        kwargs = {"logits_to_keep": C + 1} if accepts_logits_to_keep(model) else {}
        out = model(input_ids=input_ids, attention_mask=attention, position_ids=position_ids,
                    output_hidden_states=value_head is not None or need_hidden, use_cache=False, **kwargs)
        # With logits_to_keep the LM head runs on the last C + 1 positions only (P - 1 ... P + C - 1):
        # the prompt's logits are never needed, and on a 49k vocabulary they cost a fifth of the pass.
        raw = out.logits[:, :C] if kwargs else out.logits[:, P - 1 : P + C - 1]
    logprobs, entropy = _token_logprobs(raw, c_ids, temperature, top_k, top_p, need_entropy, entropy_grad)
    result = {"logprobs": logprobs}
    if need_entropy:
        result["entropy"] = entropy
    if need_logits:
        logits = raw.float()
        result["logits"] = logits / temperature if temperature and temperature != 1.0 else logits
    if value_head is not None or need_hidden:
        hidden = out.hidden_states[-1][:, P - 1 : P + C - 1]
        if need_hidden:
            result["hidden"] = hidden
    if value_head is not None:
        if detach_value_input:
            hidden = hidden.detach()
        # The head follows the policy's compute dtype: under autocast the hidden state is half.
        head_dtype = next(value_head.parameters()).dtype
        result["values"] = value_head(hidden.to(head_dtype)).squeeze(-1).float()
    return result


def attended(batch: dict):
    """``(B, C)``: the completion tokens the model attends to — ``completion_attention`` where a
    multi-turn rollout set it (the model's and the environment's tokens), else ``completion_mask``."""
    return batch["completion_attention"] if "completion_attention" in batch else batch["completion_mask"]


def accepts_logits_to_keep(model) -> bool:
    """Whether ``model``'s forward takes ``logits_to_keep`` (HF causal LMs do; PEFT passes it through)."""
    return forward_accepts(model, "logits_to_keep")


class ValueHead:
    """Factory for the critic: a linear layer on the policy's last hidden state (one value per token)."""

    @staticmethod
    def build(hidden_size: int):
        import torch

        head = torch.nn.Linear(hidden_size, 1)
        # Small init: the critic starts near 0 instead of adding noise to the first advantages.
        torch.nn.init.normal_(head.weight, std=1.0 / (hidden_size ** 0.5) * 0.1)
        torch.nn.init.zeros_(head.bias)
        return head
