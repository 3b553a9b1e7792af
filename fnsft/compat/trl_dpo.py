"""TRL's ``DPOTrainer`` with its private steps turned into named hooks (``trl>=1.16,<1.17``,
:data:`fnsft.compat.trl.DPO_HOOKS`).

TRL has no public extension point for three steps fnsft's DPO stage changes
(:mod:`fnsft.workers.hf.dpo_trl`): tokenizing the pairs (``_prepare_dataset``: fnsft shortens
prompts before TRL's length filter), the dataset HF's samplers see (``_get_train_sampler`` /
``_get_eval_sampler``, after unused columns are dropped: fnsft adds the pairs' lengths), and the
reference log-probs of ``precompute_ref_log_probs`` (``_precompute_ref_logps``: TRL caches them
in a file only rank 0 writes). :class:`DPOTrainerHooks` routes each private step through a public
method a subclass overrides; outside the checked range (:data:`HOOKED` is False) it overrides
nothing, the hooks are never called, and TRL's own steps run (the public path).

Importing this module imports TRL.
"""

from __future__ import annotations

import importlib
import inspect

from trl import DPOTrainer

from fnsft.compat.trl import DPO_HOOKS, checked


def _hooks_match() -> bool:
    for (module, cls, name), params in DPO_HOOKS.items():
        method = getattr(getattr(importlib.import_module(module), cls, None), name, None)
        if method is None or tuple(inspect.signature(method).parameters)[:len(params)] != params:
            return False
    return True


HOOKED = checked() and _hooks_match()  # whether DPOTrainerHooks routes TRL's private steps


class DPOTrainerHooks(DPOTrainer):
    """``DPOTrainer`` whose private steps call the public hooks below (when :data:`HOOKED`).

    Each hook's default is TRL's own step, so a subclass overrides only what it changes.
    """

    def prepare_dataset(self, dataset, processing_class, args, dataset_name, tokenize):
        """Tokenize ``dataset`` (TRL's step: ``tokenize(dataset, processing_class, args,
        dataset_name)``, which also drops pairs longer than ``args.max_length``)."""
        return tokenize(dataset, processing_class, args, dataset_name)

    def sampler_dataset(self, dataset):
        """The dataset HF's train/eval sampler is built from (after unused columns are dropped)."""
        return dataset

    def reference_log_probs(self, dataset, name: str, batch_size: int, precompute):
        """``dataset`` with ``ref_chosen_logps``/``ref_rejected_logps`` columns (TRL's step:
        ``precompute(dataset, name, batch_size)``)."""
        return precompute(dataset, name, batch_size)

    def reference_engine(self):
        """The model to run reference passes on before training: TRL's cached DeepSpeed inference
        engine of the policy when there is no separate reference under DeepSpeed, else the
        reference model (or the policy, PEFT's adapter disabled by TRL's
        ``compute_ref_log_probs``)."""
        if self.ref_model is None and self.is_deepspeed_enabled:
            if self._precompute_engine is None:
                from trl.models import prepare_deepspeed

                self._precompute_engine = prepare_deepspeed(self.model, self.accelerator)
            return self._precompute_engine
        return self.ref_model or self.model

    if HOOKED:
        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            return self.prepare_dataset(dataset, processing_class, args, dataset_name, super()._prepare_dataset)

        def _get_train_sampler(self, train_dataset=None):
            return super()._get_train_sampler(self.sampler_dataset(train_dataset or self.train_dataset))

        def _get_eval_sampler(self, eval_dataset):
            return super()._get_eval_sampler(self.sampler_dataset(eval_dataset))

        def _precompute_ref_logps(self, dataset, name, batch_size):
            return self.reference_log_probs(dataset, name, batch_size, super()._precompute_ref_logps)
