"""Online (iterative) DPO inside the RL loop: judge-ranked pairs and the DPO loss (``online_dpo``).

Each iteration samples ``num_generations`` completions per prompt; the best- and worst-scored of
a group become a (chosen, rejected) pair — no pair when they tie or fewer than two are valid.
The DPO loss of a pair is ``-log σ(β Δ)`` with
``Δ = (log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))`` (sequence log-probs).

One gradient step per batch, on-policy: the gradient of the pair loss is
``−β σ(−β Δ) (∇ log π(y_w) − ∇ log π(y_l))``, so with the weights ``±β σ(−β Δ)`` computed before
the step (:func:`dpo_row_weights`) the loss decomposes over rows (:func:`dpo_policy_loss`) and
shards across workers like every other loss of the loop — the gradient is exactly DPO's.
"""

from __future__ import annotations

from typing import Optional, Sequence


def preference_pairs(scores: Sequence[float], valid: Sequence[bool], group: int) -> list[tuple[int, int]]:
    """``(chosen, rejected)`` row indices: per group of ``group`` consecutive rows, the highest and
    the lowest valid score (first one on ties); none when the group has < 2 valid rows or all tie."""
    pairs = []
    for start in range(0, len(scores), group):
        rows = [i for i in range(start, min(start + group, len(scores))) if valid[i]]
        if len(rows) < 2:
            continue
        best = max(rows, key=lambda i: scores[i])
        worst = min(rows, key=lambda i: scores[i])
        if scores[best] > scores[worst]:
            pairs.append((best, worst))
    return pairs


def dpo_row_weights(old_logprobs, ref_logprobs, mask, scores, group: int, beta: float):
    """``(weights (B,), stats)``: ``+β σ(−βΔ)`` on chosen rows, ``−β σ(−βΔ)`` on rejected ones, 0 else."""
    import torch
    import torch.nn.functional as F

    from fnsft.rl.masked import masked_sum

    valid = (mask.sum(-1) > 0).tolist()
    pairs = preference_pairs(scores.tolist(), valid, group)
    weights = torch.zeros(len(scores), dtype=torch.float32, device=scores.device)
    stats = {"dpo_pairs": float(len(pairs))}
    if not pairs:
        return weights, stats
    logratio = masked_sum(old_logprobs - ref_logprobs, mask, dim=-1)
    w_idx = torch.tensor([p[0] for p in pairs], device=scores.device)
    l_idx = torch.tensor([p[1] for p in pairs], device=scores.device)
    delta = logratio[w_idx] - logratio[l_idx]
    coef = beta * torch.sigmoid(-beta * delta)
    weights[w_idx] = coef.float()
    weights[l_idx] = -coef.float()
    stats.update(dpo_loss=float(-F.logsigmoid(beta * delta).mean()),
                 dpo_accuracy=float((delta > 0).float().mean()),
                 dpo_margin=float(delta.mean()))
    return weights, stats


def dpo_policy_loss(logprobs, weights, mask, num_pairs: Optional[float] = None):
    """``−Σ_rows w · log π(row) / pairs``: its gradient is the DPO gradient of the pairs (see the module)."""
    from fnsft.rl.masked import masked_sum

    seq = masked_sum(logprobs, mask, dim=-1)
    pairs = num_pairs if num_pairs is not None else max(float((weights > 0).sum()), 1.0)
    loss = -(weights.detach() * seq).sum() / pairs
    return loss, {}
