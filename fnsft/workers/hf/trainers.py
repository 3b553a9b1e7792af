"""The HF/TRL trainers the training stages train with, and what each one supports.

A stage names its trainer with a :class:`TrainerKind` (``TrainStage.trainer``); the Train job
carries the kind's factory (``TrainJob.trainer_factory``) and every worker calls it
(:func:`fnsft.workers.hf.worker.train_worker`). A new trainer is a new factory and a new kind
here. Importing this module stays light: the factories import torch/TRL when called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from fnsft.workers.hf.dpo_trainer import build_dpo_trainer
from fnsft.workers.hf.sft_trainer import build_sft_trainer


@dataclass(frozen=True)
class TrainerKind:
    """A trainer factory and the batching it allows.

    ``build(job, model, tokenizer, train_dataset, eval_dataset, args, peft_config)`` runs in each
    Train worker and returns the ``transformers.Trainer``; it must be a module-level function
    (the job pickles it by reference). ``padding_free``: whether the trainer can train on
    padding-free batches (YAML ``padding_free``; :mod:`fnsft.workers.hf.batching`).
    """

    build: Callable[..., Any]
    padding_free: bool


SFT_TRAINER = TrainerKind(build_sft_trainer, padding_free=True)
# TRL 1.16 disables padding_free for DPO: its pairs are length-grouped instead.
DPO_TRAINER = TrainerKind(build_dpo_trainer, padding_free=False)
