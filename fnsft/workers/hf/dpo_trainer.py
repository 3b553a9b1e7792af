"""The DPO stage's trainer, built inside each Ray Train worker (YAML ``stage_configs.dpo``).

:func:`build_dpo_trainer` is the stage's trainer factory (``DPO_TRAINER``, :mod:`fnsft.workers.hf.trainers`):
TRL's ``DPOTrainer`` plus what TRL 1.16 lacks (:mod:`fnsft.workers.hf.dpo_trl`), configured
from :class:`fnsft.stages.dpo.DPOConfig`. The small
``effective_*`` helpers resolve the config's defaults; the stage (driver) uses them too.
Importing this module stays light: torch/TRL load on first use.
"""

from __future__ import annotations

from typing import Any

# beta when the YAML leaves it out: DPO-style losses scale log-ratios; SimPO scales average log-probs.
DEFAULT_BETA = {"sigmoid": 0.1, "ipo": 0.1, "hinge": 0.1, "cdpo": 0.1, "simpo": 2.0}
DEFAULT_SIMPO_GAMMA = 1.0


def effective_beta(c) -> float:
    return c.beta if c.beta is not None else DEFAULT_BETA[c.loss_type]


def effective_max_prompt_length(c) -> int:
    return c.max_prompt_length if c.max_prompt_length is not None else c.max_length // 2


def effective_simpo_gamma(c) -> float:
    return c.simpo_gamma if c.simpo_gamma is not None else DEFAULT_SIMPO_GAMMA


def trl_loss_settings(loss_type: str, label_smoothing: float = 0.0) -> dict[str, Any]:
    """Our ``loss_type`` as TRL ``DPOConfig`` fields.

    TRL 1.16's ``sigmoid`` ignores ``label_smoothing``; conservative DPO,
    ``-(1-e) logsig(bh) - e logsig(-bh)``, is ``2(1-e) * sigmoid - (1-2e) * robust`` where TRL's
    ``robust`` is ``(-(1-e) logsig(bh) + e logsig(-bh)) / (1-2e)``. SimPO replaces the loss in
    :class:`fnsft.workers.hf.dpo_trl.FnsftDPOTrainer` (``loss_type`` is then unused).
    """
    if loss_type == "cdpo":
        e = label_smoothing
        return {"loss_type": ["sigmoid", "robust"], "loss_weights": [2 * (1 - e), -(1 - 2 * e)],
                "label_smoothing": e}
    if loss_type == "simpo":
        return {"loss_type": ["sigmoid"]}
    return {"loss_type": [loss_type]}


def dpo_trainer_class():
    """:class:`fnsft.workers.hf.dpo_trl.FnsftDPOTrainer`, imported on first use so that importing
    this module (validation, ``--dry_run``) stays light."""
    from fnsft.workers.hf.dpo_trl import FnsftDPOTrainer

    return FnsftDPOTrainer


def build_dpo_trainer(job, model, tokenizer, train_dataset, eval_dataset, args, peft_config):
    """Runs in each Ray Train worker: the DPO trainer for this stage's config."""
    from trl import DPOConfig as TRLDPOConfig

    from fnsft.compat.trl_dpo import HOOKED

    c = job.stage_config
    simpo = c.loss_type == "simpo"
    if not HOOKED and args.get("train_sampling_strategy") in ("group_by_length", "batch_rebalance"):
        # HF's length-grouped samplers need the pairs' lengths, which only the TRL hook adds.
        args = {**args, "train_sampling_strategy": "random"}
    config = TRLDPOConfig(
        **args, beta=effective_beta(c), max_length=c.max_length,
        # SimPO: TRL then keeps no reference model; FnsftDPOTrainer skips the precompute pass.
        precompute_ref_log_probs=c.precompute_ref_log_probs or simpo,
        prediction_loss_only=True,  # eval needs the loss and metrics only, not a second forward for logits
        **trl_loss_settings(c.loss_type, c.label_smoothing),
    )
    ref_model = None
    if peft_config is None and not config.precompute_ref_log_probs:
        # TRL would rebuild the reference from model.config's path: the base model's folder, not the
        # weights this stage received (e.g. SFT's, from the object store). Load those instead.
        ref_model = job.model.load(dtype=model.dtype)
        ref_model.requires_grad_(False)
        ref_model.eval()
    trainer_class = dpo_trainer_class()
    return trainer_class(model=model, ref_model=ref_model, args=config, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, processing_class=tokenizer, peft_config=peft_config,
                         max_prompt_length=effective_max_prompt_length(c),
                         simpo_gamma=effective_simpo_gamma(c) if simpo else None)

