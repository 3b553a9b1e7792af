from fnsft.stages.base import BaseStage, StageConfig, StageResult

@dataclass
class MyStageConfig(StageConfig):
    my_parameter: str = field(metadata={"help": "My custom parameter"})

class MyStage(BaseStage):
    @property
    def stage_name(self) -> str:
        return "my_stage"
    
    def validate_config(self) -> None:
        # Validate configuration
        pass
    
    def execute(self, model, tokenizer, previous_result=None) -> StageResult:
        # Implement your training logic
        pass
from fnsft.pipeline import Pipeline
Pipeline.register_stage("my_stage", MyStage)
