"""A test-only stage: says it started (a marker file), then waits to be stopped (SIGTERM)."""

import time
from dataclasses import dataclass, field

from fnsft.pipeline import Pipeline
from fnsft.stages.base import BaseStage, StageConfig, StageResult


@dataclass
class WaitStageConfig(StageConfig):
    marker: str = field(metadata={"help": "Written when the stage starts."})
    seconds: float = field(default=120.0, metadata={"help": "How long to wait."})


class WaitStage(BaseStage):
    @property
    def stage_name(self) -> str:
        return "wait"

    def execute(self, model, tokenizer, previous_result=None) -> StageResult:
        with open(self.config.marker, "w") as f:
            f.write("started")
        time.sleep(self.config.seconds)
        return StageResult(model=None)


Pipeline.register_stage("wait", WaitStage)
