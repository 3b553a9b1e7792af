"""A test-only stage: raises KeyboardInterrupt once (while a marker file exists), like Ctrl-C."""

import os
from dataclasses import dataclass, field

from fnsft.pipeline import Pipeline
from fnsft.stages.base import BaseStage, StageConfig, StageResult


@dataclass
class InterruptStageConfig(StageConfig):
    marker: str = field(metadata={"help": "Interrupt while this file exists (and delete it)."})


class InterruptStage(BaseStage):
    @property
    def stage_name(self) -> str:
        return "interrupt_once"

    def execute(self, model, tokenizer, previous_result=None) -> StageResult:
        from fnsft.models.checksum import weights_sha256

        if os.path.exists(self.config.marker):
            os.remove(self.config.marker)
            raise KeyboardInterrupt
        lm = model.load()
        return StageResult(model=lm, metrics={"incoming_sha256": weights_sha256(lm.state_dict())})


Pipeline.register_stage("interrupt_once", InterruptStage)
