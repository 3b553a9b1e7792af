"""The reference role: frozen log-probs of the starting policy, for the KL term (``rl.reference``).

With LoRA the trainer does not need this actor: the policy with its adapters disabled *is*
the reference (``reference.mode: auto`` picks that). The class is plain Python;
``ActorGroup`` makes it a Ray actor.
"""

from __future__ import annotations


class ReferenceActor:
    """Holds a frozen copy of the incoming model and scores completions with it."""

    def __init__(self, model, dtype: str = "auto", batch_size: int = 0, replica: int = 0):
        import torch

        from fnsft.utils.console import quiet_libraries
        from fnsft.models.loading import resolve_torch_dtype

        quiet_libraries()
        self.replica = replica
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.load(dtype=resolve_torch_dtype(dtype, self.device.type == "cuda")).to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.batch_size = batch_size

    def ready(self) -> bool:
        return True

    def logprobs(self, batch: dict, temperature: float = 1.0):
        """``(B, C)`` float32 numpy log-probs of the completion tokens of a padded batch
        (:func:`fnsft.actors.modeling.rollout_arrays`), 0 on padding."""
        import numpy as np
        import torch

        from fnsft.actors.modeling import completion_forward, to_torch

        n = len(batch["completion_ids"])
        step = self.batch_size or n
        out = []
        for s in range(0, n, step):
            part = to_torch({k: v[s:s + step] for k, v in batch.items()}, self.device)
            with torch.no_grad():
                lp = completion_forward(self.model, part, temperature)["logprobs"]
            out.append((lp * part["completion_mask"]).cpu().numpy().astype(np.float32))
        return np.concatenate(out, axis=0) if out else np.zeros((0, 0), np.float32)
