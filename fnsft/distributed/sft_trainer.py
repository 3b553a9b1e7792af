"""The SFT stage's trainer, built inside each Ray Train worker (YAML ``stage_configs.sft``).

:func:`build_sft_trainer` is the stage's ``builder`` (see :mod:`fnsft.distributed.hf_worker`):
TRL's ``SFTTrainer`` configured from :class:`fnsft.stages.sft.SFTConfig`.
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
    return SFTTrainer(model=model, args=config, train_dataset=train_dataset, eval_dataset=eval_dataset,
                      processing_class=tokenizer, peft_config=peft_config)
