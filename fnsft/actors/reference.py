"""The reference role: frozen log-probs of the starting policy, for the KL term (``rl.reference``).

With LoRA the trainer does not need this actor: the policy with its adapters disabled *is*
the reference (``reference.mode: auto`` picks that). The class is plain Python;
``ActorGroup`` makes it a Ray actor.
"""

from __future__ import annotations

from fnsft.actors.serving import ModelServer


class ReferenceActor(ModelServer):
    """Holds a frozen copy of the incoming model and scores completions with it (a :class:`ModelServer`)."""

    def __init__(self, model, dtype: str = "auto", batch_size: int = 0, replica: int = 0):
        super().__init__(model, dtype=dtype, batch_size=batch_size, replica=replica)
        for p in self.model.parameters():
            p.requires_grad_(False)

    def logprobs(self, batch: dict, temperature: float = 1.0):
        """``(B, C)`` float32 numpy log-probs of the completion tokens of a padded batch
        (:func:`fnsft.models.tokens.rollout_arrays`), 0 on padding."""
        import numpy as np
        import torch

        from fnsft.models.forward import completion_forward
        from fnsft.models.tokens import to_torch

        out = []
        for rows in self.batches(len(batch["completion_ids"])):
            part = to_torch({k: v[rows] for k, v in batch.items()}, self.device)
            with torch.no_grad():
                lp = completion_forward(self.model, part, temperature)["logprobs"]
            out.append((lp * part["completion_mask"]).cpu().numpy().astype(np.float32))
        return np.concatenate(out, axis=0) if out else np.zeros((0, 0), np.float32)
