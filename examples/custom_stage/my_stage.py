"""The guide's custom stage, as a plugin file.

Use it from YAML (``plugins: [examples/custom_stage/my_stage.py]``) or import it and call
``Pipeline.register_stage`` yourself. It inspects the model it receives — a weights checksum
and a greedy answer to ``my_parameter`` — and hands the model on unchanged.
"""

from dataclasses import dataclass, field

from fnsft.pipeline import Pipeline
from fnsft.stages.base import BaseStage, StageConfig, StageResult


@dataclass
class MyStageConfig(StageConfig):
    my_parameter: str = field(metadata={"help": "My custom parameter: a prompt to answer greedily"})


class MyStage(BaseStage):
    @property
    def stage_name(self) -> str:
        return "my_stage"

    def validate_config(self) -> None:
        if not self.config.my_parameter.strip():
            from fnsft.errors import ConfigError

            raise ConfigError("stage_configs.my_stage.my_parameter: must not be empty")

    def execute(self, model, tokenizer, previous_result=None) -> StageResult:
        import torch

        from fnsft.models.checksum import weights_sha256

        lm = model.load()  # a transformers model with the previous stage's weights
        messages = [{"role": "user", "content": self.config.my_parameter}]
        inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                               return_tensors="pt", return_dict=True)
        with torch.no_grad():
            out = lm.generate(**inputs, max_new_tokens=16, do_sample=False)
        answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        return StageResult(model=None, metrics={
            "weights_sha256": weights_sha256(lm.state_dict()),
            "incoming_from": previous_result.stage_name if previous_result else "base",
            "answer": answer,
        })


Pipeline.register_stage("my_stage", MyStage)
