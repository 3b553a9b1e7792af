"""On-policy distillation's signal: the teacher scores the tokens the student sampled.

GKD (Agarwal et al. 2024) and Thinking Machines' on-policy distillation (2025): the student
samples completions, a frozen teacher gives the log-prob of each sampled token, and every token's
advantage is ``log π_teacher(y_t) − log π_student(y_t)`` — minus the single-sample estimate of the
per-token reverse KL ``KL(π_student ‖ π_teacher)``, with no discount (each token answers for itself).
Maximising it with the clipped policy loss (:func:`fnsft.rl.grpo_family.clipped_loss`) lowers the
reverse KL on the student's own samples: mode-seeking, so the student learns where the teacher is
confident without being pushed into the teacher's every alternative. No reward model enters the loss.
"""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def teacher_advantages(student_logprobs: Tensor, teacher_logprobs: Tensor, mask: Tensor) -> Tensor:
    """``(B, T)`` advantages ``(teacher - student) * mask`` from the sampled tokens' log-probs
    (``student_logprobs``: the policy that sampled, before the update)."""
    return (teacher_logprobs.float() - student_logprobs.float()) * mask
