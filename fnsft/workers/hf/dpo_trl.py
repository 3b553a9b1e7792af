"""The DPO stage's TRL trainer: ``DPOTrainer`` plus what TRL 1.16 lacks (``max_prompt_length``,
SimPO, the pairs' lengths for length-grouped batches, a per-rank reference precompute).

Built by :func:`fnsft.workers.hf.dpo_trainer.build_dpo_trainer`; importing this module imports
TRL. The steps TRL has no public hook for come through :class:`fnsft.compat.trl_dpo.DPOTrainerHooks`
(on another TRL they are TRL's own: see that module); the rest uses public ``Trainer`` methods
(``compute_loss``, ``evaluate``, ``log``).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Optional

import torch
import torch.nn.functional as F
from datasets import Dataset, concatenate_datasets
from transformers import Trainer

from fnsft.compat.trl_dpo import DPOTrainerHooks


def pair_lengths(dataset, max_length: Optional[int]) -> list[int]:
    """Tokens of each pair's padded row: prompt plus the longer answer (capped at ``max_length``)."""
    out = []
    for p, c, r in zip(dataset["prompt_ids"], dataset["chosen_ids"], dataset["rejected_ids"]):
        n = len(p) + max(len(c), len(r))
        out.append(min(n, max_length) if max_length else n)
    return out


class _MetricsAfterTRL(Trainer):
    """Sits between TRL's ``DPOTrainer.log`` and HF's ``Trainer.log`` in the method order of
    :class:`FnsftDPOTrainer` (its fields below), so it sees the metrics TRL has just averaged
    into ``logs``: both are public ``log`` methods, no private TRL state is read."""

    simpo_metrics: dict[str, dict[str, list[float]]]
    simpo_gamma: Optional[float]
    metric_prefix: str
    beta: float

    def log(self, logs: dict[str, float], start_time: Optional[float] = None) -> None:
        mode = "train" if self.model.training else "eval"
        prefix = "eval_" if mode == "eval" else ""
        own = self.simpo_metrics[mode]
        logs.update({f"{prefix}{k}": sum(v) / len(v) for k, v in own.items() if v})
        own.clear()
        # The KL-style log-ratio log(pi/pi_ref) of each side: the implicit reward without beta.
        if self.simpo_gamma is None:
            for side in ("chosen", "rejected"):
                if f"{prefix}rewards/{side}" in logs:
                    logs[f"{prefix}logratios/{side}"] = logs[f"{prefix}rewards/{side}"] / self.beta
        if mode == "eval" and self.metric_prefix != "eval":
            # TRL names its eval metrics eval_* whatever the prefix; the worker's evaluation before
            # training asks for before_eval_*. In place: evaluate() returns this same dict.
            for k in [k for k in logs if k.startswith("eval_")]:
                logs[f"{self.metric_prefix}_{k[5:]}"] = logs.pop(k)
        super().log(logs, start_time)


class FnsftDPOTrainer(DPOTrainerHooks, _MetricsAfterTRL):
    """TRL's DPOTrainer with ``max_prompt_length`` (prompts shortened, not pairs dropped),
    SimPO (``simpo_gamma`` set: reference-free), length-grouped batches and a per-rank reference
    precompute (YAML ``stage_configs.dpo``)."""

    def __init__(self, *args, max_prompt_length: Optional[int] = None, simpo_gamma: Optional[float] = None,
                 **kwargs):
        # Read by prepare_dataset and reference_log_probs, which DPOTrainer.__init__ calls.
        self.max_prompt_length = max_prompt_length
        self.simpo_gamma = simpo_gamma
        self.simpo_metrics: dict[str, dict[str, list[float]]] = {"train": defaultdict(list),
                                                                 "eval": defaultdict(list)}
        self.metric_prefix = "eval"  # the running evaluate()'s metric_key_prefix
        super().__init__(*args, **kwargs)

    # Data ----------------------------------------------------------------------------------

    def prepare_dataset(self, dataset, processing_class, args, dataset_name, tokenize):
        if self.max_prompt_length is None or "prompt_ids" in (dataset.column_names or []):
            return tokenize(dataset, processing_class, args, dataset_name)
        # TRL drops pairs whose prompt alone fills max_length; shorten the prompts first, then drop.
        max_length, args.max_length = args.max_length, None
        try:
            dataset = tokenize(dataset, processing_class, args, dataset_name)
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

    def sampler_dataset(self, dataset):
        """HF's length-grouped samplers read a ``length`` column or ``input_ids``; a pair's rows
        are ``prompt_ids`` + ``chosen_ids``/``rejected_ids``, padded to the longer side."""
        if (self.args.train_sampling_strategy not in ("group_by_length", "batch_rebalance")
                or dataset is None or "prompt_ids" not in (dataset.column_names or [])
                or self.args.length_column_name in dataset.column_names):
            return dataset
        return dataset.add_column(self.args.length_column_name, pair_lengths(dataset, self.args.max_length),
                                  new_fingerprint=uuid.uuid4().hex)

    def reference_log_probs(self, dataset, name, batch_size, precompute):
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
        model = self.reference_engine()
        chosen, rejected = [], []
        for batch in loader:
            c, r = self.compute_ref_log_probs(model, batch)
            c, r = self.accelerator.gather_for_metrics((c, r))
            chosen.append(c.float().cpu())
            rejected.append(r.float().cpu())
        ref = Dataset.from_dict({"ref_chosen_logps": torch.cat(chosen).tolist(),
                                 "ref_rejected_logps": torch.cat(rejected).tolist()})
        return concatenate_datasets([dataset, ref], axis=1)

    # Loss and metrics ------------------------------------------------------------------------

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.simpo_gamma is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        return self.simpo_loss(model, inputs, return_outputs)

    def simpo_loss(self, model, inputs, return_outputs: bool):
        """SimPO (Meng et al. 2024): -logsig(beta * (avg logp(chosen) - avg logp(rejected)) - gamma).

        Reference-free: the implicit reward of an answer is beta times its mean per-token
        log-prob. Logs the same metrics as DPO under the same names.
        """
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
        m = self.simpo_metrics["train" if self.model.training else "eval"]
        m["rewards/chosen"].append(chosen_r.mean().item())
        m["rewards/rejected"].append(rejected_r.mean().item())
        m["rewards/accuracies"].append((chosen_r > rejected_r).float().mean().item())
        m["rewards/margins"].append((chosen_r - rejected_r).mean().item())
        m["logps/chosen"].append(gather(chosen_logps).mean().item())
        m["logps/rejected"].append(gather(rejected_logps).mean().item())
        return (loss, outputs) if return_outputs else loss

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        self.metric_prefix = metric_key_prefix
        try:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        finally:
            self.metric_prefix = "eval"
