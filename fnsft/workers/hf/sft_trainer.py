"""The SFT stage's trainer, built inside each Ray Train worker (YAML ``stage_configs.sft``).

:func:`build_sft_trainer` is the SFT stages' trainer factory (``SFT_TRAINER`` in
:mod:`fnsft.workers.hf.trainers`): TRL's ``SFTTrainer`` configured from
:class:`fnsft.stages.sft.SFTConfig`, batched as :mod:`fnsft.workers.hf.batching` chooses
(``padding_free``, ``train_sampling_strategy``).
"""

from __future__ import annotations


def build_sft_trainer(job, model, tokenizer, train_dataset, eval_dataset, args, peft_config):
    """Runs in each Ray Train worker: TRL's SFTTrainer for this stage's config."""
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    c = job.stage_config
    is_text = "text" in train_dataset.column_names
    config = TRLSFTConfig(
        **args, max_length=c.max_length, packing=c.packing,
        completion_only_loss=None if is_text else c.completion_only_loss,
        dataset_text_field="text",
    )
    trainer = SFTTrainer(model=model, args=config, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         processing_class=tokenizer, peft_config=peft_config)
    batching = job.batching
    if batching is not None and batching.padding_free and not c.packing:
        use_padding_free(trainer)
    return trainer


def use_padding_free(trainer) -> None:
    """Switch a built SFTTrainer to padding-free batches (TRL ``padding_free``).

    Built padded first so that TRL truncates the examples to ``max_length`` (it refuses
    ``padding_free`` with ``max_length`` and no packing, since its collator does not truncate);
    the collator then concatenates each batch's (already truncated) examples into one row.
    """
    trainer.padding_free = True
    trainer.data_collator.padding_free = True
