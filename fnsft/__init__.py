"""fnsft: LLM post-training (SFT, DPO, RL) as one pipeline on Ray Train + DeepSpeed + TRL."""

from fnsft.errors import ConfigError, FnsftError
from fnsft.pipeline import Pipeline
from fnsft.stages.base import BaseStage, StageConfig, StageContext, StageResult

__all__ = ["Pipeline", "BaseStage", "StageConfig", "StageContext", "StageResult", "FnsftError", "ConfigError"]
__version__ = "0.1.0"
