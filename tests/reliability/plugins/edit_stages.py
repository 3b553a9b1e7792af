"""Custom stages for the contract tests, written the way the guide shows (``model`` used as a
transformers model): one scales a layer in place, one records the weights it receives."""

from dataclasses import dataclass, field

from fnsft.pipeline import Pipeline
from fnsft.stages.base import BaseStage, StageConfig, StageResult


@dataclass
class ScaleLayerConfig(StageConfig):
    factor: float = field(default=2.0, metadata={"help": "Multiply the first layer's MLP weights by this."})


class ScaleLayer(BaseStage):
    @property
    def stage_name(self) -> str:
        return "scale_layer"

    def execute(self, model, tokenizer, previous_result=None) -> StageResult:
        import os

        import torch

        from fnsft.models.checksum import weights_sha256

        n_params = sum(p.numel() for p in model.parameters())
        with torch.no_grad():
            for p in model.model.layers[0].mlp.parameters():
                p.mul_(self.config.factor)
        inputs = tokenizer("The answer is", return_tensors="pt")
        out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
        copy = os.path.join(self.config.output_dir, "scaled_copy")
        model.save_pretrained(copy)
        return StageResult(model=model, metrics={
            "weights_sha256": weights_sha256(model.state_dict()), "n_params": n_params,
            "generated_tokens": int(out.shape[1] - inputs["input_ids"].shape[1]),
            "saved_copy": os.path.isfile(os.path.join(copy, "config.json"))})


@dataclass
class ProbeConfig(StageConfig):
    note: str = field(default="", metadata={"help": "Unused."})


class Probe(BaseStage):
    @property
    def stage_name(self) -> str:
        return "probe"

    def execute(self, model, tokenizer, previous_result=None) -> StageResult:
        from fnsft.models.checksum import weights_sha256

        result = previous_result or StageResult()
        result.metrics = {"incoming_sha256": weights_sha256(model.state_dict()),
                          "tokenizer_class": type(tokenizer).__name__}
        return result


@dataclass
class FailConfig(StageConfig):
    reason: str = field(default="the data looked wrong", metadata={"help": "The failure message."})


class Fail(BaseStage):
    @property
    def stage_name(self) -> str:
        return "fail_stage"

    def execute(self, model, tokenizer, previous_result=None) -> StageResult:
        return StageResult(success=False, message=self.config.reason)


Pipeline.register_stage("scale_layer", ScaleLayer)
Pipeline.register_stage("probe", Probe)
Pipeline.register_stage("probe_disabled", Probe, ProbeConfig)
Pipeline.register_stage("fail_stage", Fail)
