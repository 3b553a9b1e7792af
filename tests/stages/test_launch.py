"""The typed Train-job launch (no Ray): the pipeline's context reaches a stage in the open, the
trainer is a typed kind, and a job pickles as Ray Train sends it to its workers."""

from __future__ import annotations

import os
import pickle

from fnsft.pipeline.plan import build_plan
from fnsft.stages.base import BaseStage, StageContext, StageResult, execute_stage
from fnsft.testing import EXAMPLES, TINY

PROMPTS = os.path.join(EXAMPLES, "arithmetic", "train.jsonl")
PREFERENCES = os.path.join(EXAMPLES, "preferences.jsonl")


def _stage(tmp_path, name: str, **over):
    data = {"sft": {"dataset_name_or_path": os.path.join(EXAMPLES, "sample_data.jsonl")},
            "dpo": {"preference_dataset_path": PREFERENCES},
            "rl": {"dataset_name_or_path": PROMPTS,
                   "rewards": [{"type": "exact_match", "column": "answer", "extract": "last_number"}]}}[name]
    cfg = {"model_name_or_path": TINY, "output_dir": str(tmp_path / "o"), "stages": [name],
           "stage_configs": {name: {**data, "report_to": ["none"], **over}}}
    return build_plan(data=cfg).stages[0].stage


class _Plain(BaseStage):
    """A plugin stage written against the three-argument execute."""

    stage_name = "plain"

    def execute(self, model, tokenizer, previous_result=None):
        return StageResult(metrics={"args": 3})


class _Aware(BaseStage):
    stage_name = "aware"

    def execute(self, model, tokenizer, previous_result=None, *, context=None):
        return StageResult(metrics={"fingerprint": context.fingerprint})


def test_context_reaches_stages_that_take_it_and_spares_those_that_do_not():
    context = StageContext(fingerprint="abc123")
    assert execute_stage(_Plain(None), None, None, None, context).metrics == {"args": 3}
    assert execute_stage(_Aware(None), None, None, None, context).metrics == {"fingerprint": "abc123"}


def test_resume_fingerprint_is_the_pipelines_or_computed_from_config_and_input(tmp_path):
    class Model:
        fingerprint = "input-1"

    stage = _stage(tmp_path, "sft")
    assert stage.resume_fingerprint(Model(), StageContext(fingerprint="from-pipeline")) == "from-pipeline"
    alone = stage.resume_fingerprint(Model(), None)
    assert alone == stage.resume_fingerprint(Model(), StageContext())  # stable: a rerun resumes
    Model.fingerprint = "input-2"
    assert stage.resume_fingerprint(Model(), None) != alone  # another input model: a fresh run
    Model.fingerprint = "input-1"
    assert _stage(tmp_path, "sft", learning_rate=1e-3).resume_fingerprint(Model(), None) != alone


def test_padding_free_support_is_the_trainers(tmp_path):
    from fnsft.workers.hf.dpo_trainer import build_dpo_trainer
    from fnsft.workers.hf.sft_trainer import build_sft_trainer

    sft, dpo, rl = _stage(tmp_path, "sft"), _stage(tmp_path, "dpo"), _stage(tmp_path, "rl")
    assert sft.trainer.build is build_sft_trainer and sft.supports_padding_free() is True
    assert dpo.trainer.build is build_dpo_trainer and dpo.supports_padding_free() is False
    assert rl.trainer is None and rl.supports_padding_free() is None and rl.batching(on_gpu=False) is None


def test_a_train_job_pickles_with_its_worker_and_trainer_factory(tmp_path):
    from fnsft.runtime.train_job import TrainJob
    from fnsft.workers.hf.worker import train_worker

    stage = _stage(tmp_path, "sft")
    job = TrainJob(stage_name="sft", stage_config=stage.config, model=None, data={}, worker_fn=train_worker,
                   deepspeed=None, use_gpu=False, torch_dtype="auto", trainer_factory=stage.trainer.build,
                   batching=stage.batching(on_gpu=False), tty=True)
    back = pickle.loads(pickle.dumps(job))
    assert back.worker_fn is train_worker and back.trainer_factory is stage.trainer.build
    assert back.batching == job.batching and back.tty and back.stage_config == stage.config
