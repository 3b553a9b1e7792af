"""The DPO stage's trainer, built inside each Ray Train worker (YAML ``stage_configs.dpo``).

:func:`build_dpo_trainer` is the stage's ``builder`` (see :mod:`fnsft.distributed.hf_worker`):
TRL's ``DPOTrainer`` plus what TRL 1.16 lacks (``max_prompt_length``, SimPO, a per-rank
reference precompute), configured from :class:`fnsft.stages.dpo.DPOConfig`. The small
``effective_*`` helpers resolve the config's defaults; the stage (driver) uses them too.
Importing this module stays light: torch/TRL load on first use.
"""

from __future__ import annotations

import functools
import uuid
from typing import Any, Optional

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
    :func:`dpo_trainer_class` (``loss_type`` is then unused).
    """
    if loss_type == "cdpo":
        e = label_smoothing
        return {"loss_type": ["sigmoid", "robust"], "loss_weights": [2 * (1 - e), -(1 - 2 * e)],
                "label_smoothing": e}
    if loss_type == "simpo":
        return {"loss_type": ["sigmoid"]}
    return {"loss_type": [loss_type]}


@functools.cache
def dpo_trainer_class():
    """TRL's DPOTrainer plus what TRL 1.16 lacks: ``max_prompt_length``, SimPO, per-rank precompute.

    Built on first use so that importing this module (validation, ``--dry_run``) stays light.
    """
    import torch
    import torch.nn.functional as F
    from datasets import Dataset
    from trl import DPOTrainer

    class FnsftDPOTrainer(DPOTrainer):
        def __init__(self, *args, max_prompt_length: Optional[int] = None, simpo_gamma: Optional[float] = None,
                     **kwargs):
            # Read by _prepare_dataset, which DPOTrainer.__init__ calls.
            self.max_prompt_length = max_prompt_length
            self.simpo_gamma = simpo_gamma
            super().__init__(*args, **kwargs)

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            if self.max_prompt_length is None or "prompt_ids" in (dataset.column_names or []):
                return super()._prepare_dataset(dataset, processing_class, args, dataset_name)
            # TRL drops pairs whose prompt alone fills max_length; shorten the prompts first, then drop.
            max_length, args.max_length = args.max_length, None
            try:
                dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
            finally:
                args.max_length = max_length
            n = self.max_prompt_length
            # A fresh fingerprint: the data lives in memory (nothing to cache), and hashing the
            # lambdas with dill prints their bytecode under Ray Train's print patch.
            dataset = dataset.map(lambda ex: {"prompt_ids": ex["prompt_ids"][-n:]}, new_fingerprint=uuid.uuid4().hex)
            if max_length is not None:
                dataset = dataset.filter(lambda ex: len(ex["prompt_ids"]) < max_length,
                                         new_fingerprint=uuid.uuid4().hex)
            return dataset

        def _get_train_sampler(self, train_dataset=None):
            return super()._get_train_sampler(self._with_lengths(train_dataset or self.train_dataset))

        def _get_eval_sampler(self, eval_dataset):
            return super()._get_eval_sampler(self._with_lengths(eval_dataset))

        def _with_lengths(self, dataset):
            """HF's length-grouped samplers read a ``length`` column or ``input_ids``; a pair's
            rows are ``prompt_ids`` + ``chosen_ids``/``rejected_ids``, padded to the longer side."""
            if (self.args.train_sampling_strategy not in ("group_by_length", "batch_rebalance")
                    or dataset is None or "prompt_ids" not in (dataset.column_names or [])
                    or self.args.length_column_name in dataset.column_names):
                return dataset
            return dataset.add_column(self.args.length_column_name, pair_lengths(dataset, self.args.max_length),
                                      new_fingerprint=uuid.uuid4().hex)

        def _precompute_ref_logps(self, dataset, name, batch_size):
            """TRL's pass, kept in memory on every rank (and skipped by reference-free SimPO).

            TRL writes the log-probs to a cache file beside the dataset that only rank 0 writes;
            Ray Train's in-memory datasets have no shared cache folder, so other ranks could not
            read it. Each rank computes its shard; the gather gives every rank all of them.
            """
            if self.simpo_gamma is not None:
                return dataset
            from torch.utils.data import DataLoader

            loader = self.accelerator.prepare(DataLoader(
                dataset, batch_size=batch_size, collate_fn=self.data_collator, shuffle=False,
                num_workers=self.args.dataloader_num_workers, pin_memory=self.args.dataloader_pin_memory))
            if self.ref_model is None and self.is_deepspeed_enabled:
                if self._precompute_engine is None:
                    from trl.models import prepare_deepspeed

                    self._precompute_engine = prepare_deepspeed(self.model, self.accelerator)
                model = self._precompute_engine
            else:
                model = self.ref_model or self.model
            chosen, rejected = [], []
            for batch in loader:
                c, r = self.compute_ref_log_probs(model, batch)
                c, r = self.accelerator.gather_for_metrics((c, r))
                chosen.append(c.float().cpu())
                rejected.append(r.float().cpu())
            ref = Dataset.from_dict({"ref_chosen_logps": torch.cat(chosen).tolist(),
                                     "ref_rejected_logps": torch.cat(rejected).tolist()})
            from datasets import concatenate_datasets

            return concatenate_datasets([dataset, ref], axis=1)

        def _compute_loss(self, model, inputs, return_outputs):
            if self.simpo_gamma is None:
                return super()._compute_loss(model, inputs, return_outputs)
            return self._simpo_loss(model, inputs, return_outputs)

        def _simpo_loss(self, model, inputs, return_outputs):
            """SimPO (Meng et al. 2024): -logsig(beta * (avg logp(chosen) - avg logp(rejected)) - gamma).

            Reference-free: the implicit reward of an answer is beta times its mean per-token
            log-prob. Logs the same metrics as DPO under the same names.
            """
            mode = "train" if self.model.training else "eval"
            completion_mask = inputs["completion_mask"]
            kwargs = {k: v for k, v in inputs.items()
                      if k not in ("completion_mask", "ref_chosen_logps", "ref_rejected_logps")}
            labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
            outputs = model(**kwargs, use_cache=False, labels=labels, fused_lm_head=True)
            mask = completion_mask[..., 1:]
            logps = outputs.log_probs[:, -mask.size(1):].sum(dim=1)  # masked positions are 0
            avg = logps / mask.sum(dim=1).clamp(min=1)
            chosen_avg, rejected_avg = avg.chunk(2, dim=0)
            chosen_rewards, rejected_rewards = self.beta * chosen_avg, self.beta * rejected_avg
            loss = -F.logsigmoid(chosen_rewards - rejected_rewards - self.simpo_gamma).mean()

            gather = self.accelerator.gather
            chosen_r, rejected_r = gather(chosen_rewards.detach()), gather(rejected_rewards.detach())
            chosen_logps, rejected_logps = logps.detach().chunk(2, dim=0)
            m = self._metrics[mode]
            m["rewards/chosen"].append(chosen_r.mean().item())
            m["rewards/rejected"].append(rejected_r.mean().item())
            m["rewards/accuracies"].append((chosen_r > rejected_r).float().mean().item())
            m["rewards/margins"].append((chosen_r - rejected_r).mean().item())
            m["logps/chosen"].append(gather(chosen_logps).mean().item())
            m["logps/rejected"].append(gather(rejected_logps).mean().item())
            return (loss, outputs) if return_outputs else loss

        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
            self._eval_prefix = metric_key_prefix
            try:
                return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
            finally:
                self._eval_prefix = "eval"

        def log(self, logs: dict[str, float], start_time: Optional[float] = None) -> None:
            mode = "train" if self.model.training else "eval"
            m = self._metrics[mode]
            # The KL-style log-ratio log(pi/pi_ref) of each side: the implicit reward without beta.
            if self.simpo_gamma is None:
                for side in ("chosen", "rejected"):
                    if m.get(f"rewards/{side}"):
                        m[f"logratios/{side}"] = [v / self.beta for v in m[f"rewards/{side}"]]
            prefix = getattr(self, "_eval_prefix", "eval")
            if mode == "eval" and prefix != "eval":
                # TRL names eval metrics eval_* whatever the prefix; the worker's evaluation before
                # training asks for before_eval_*.
                logs.update({f"{prefix}_{k}": sum(v) / len(v) for k, v in m.items() if v})
                m.clear()
            super().log(logs, start_time)

    return FnsftDPOTrainer


def pair_lengths(dataset, max_length: Optional[int]) -> list[int]:
    """Tokens of each pair's padded row: prompt plus the longer answer (capped at ``max_length``)."""
    out = []
    for p, c, r in zip(dataset["prompt_ids"], dataset["chosen_ids"], dataset["rejected_ids"]):
        n = len(p) + max(len(c), len(r))
        out.append(min(n, max_length) if max_length else n)
    return out


def build_dpo_trainer(job, model, tokenizer, train_dataset, eval_dataset, args, peft_config):
    """Runs in each Ray Train worker: the DPO trainer for this stage's config."""
    from trl import DPOConfig as TRLDPOConfig

    c = job.stage_config
    simpo = c.loss_type == "simpo"
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

