"""Fast checks: the console filter, report_to validation, answers from a real tiny model (no Ray)."""

from __future__ import annotations

import logging
import os

import pytest

from fnsft.config.schema import ReportConfig
from fnsft.runtime import log_routing as worker_output
from fnsft.errors import ConfigError
from fnsft.pipeline.plan import build_plan
from fnsft.testing import EXAMPLES, tiny_sft_config

RAY_LINES = [
    "Reporting training result 1: TrainingReport(checkpoint=None, metrics={'loss': 6.2, 'total_flos': 1e13})",
    "Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'.",
    "[2026-11-30 15:56:57,387] [WARNING] [real_accelerator.py:213:get_accelerator] Setting accelerator to CPU.",
    "DeepSpeed deepspeed.ops.comm.deepspeed_shm_comm_op built successfully",
    "[2026-11-30 16:00:34,259 E 16401 16606] core_worker.cc:2465: Actor with class name: 'PreemptionWatcher'",
    "Attempting to start training worker group of size 2 with the following resources: [{'CPU': 1.0}] * 2",
    "- (ip=192.0.2.2, pid=10213) world_rank=0, local_rank=0, node_rank=0",
    "Failed to send resource request for train-6167. If this only happens transiently during network partition "
    "or CPU being overloaded, it's safe to ignore this error.",
    "Traceback (most recent call last):",
    '  File "/ray/_private/worker.py", line 3009, in get',
    "    values, debugger_breakpoint = worker.get_objects(",
    "                                  ^^^^^^^^^^^^^^^^^^^",
    "ray.exceptions.GetTimeoutError: Get timed out: some object(s) not ready.",
]
OURS = ["[sft] step 5/10 loss=6.2477 3490 tok/s ETA 0:12", "[rl] eval @ iter 0: reward=0.000",
        "ValueError: something real went wrong"]


@pytest.fixture
def log_file(tmp_path):
    logger = logging.getLogger("fnsft")
    handler = logging.FileHandler(tmp_path / "pipeline_training.log")
    logger.addHandler(handler)
    yield tmp_path / "pipeline_training.log"
    logger.removeHandler(handler)
    handler.close()


@pytest.mark.parametrize("verbose", [False, True])
def test_console_keeps_our_lines_log_file_keeps_all(log_file, verbose):
    shown = []
    worker_output._state["verbose"] = verbose
    try:
        worker_output._route(lambda data: shown.extend(data["lines"]),
                             {"pid": 1, "actor_name": "RayTrainWorker", "lines": RAY_LINES + OURS})
        worker_output._route(lambda data: shown.extend(data["lines"]),
                             {"pid": 2, "actor_name": "PlacementGroupCleaner", "lines": ["Traceback (most recent call last):"]})
    finally:
        worker_output._state["verbose"] = False
    assert shown == (RAY_LINES + OURS + ["Traceback (most recent call last):"] if verbose else OURS)
    text = log_file.read_text()
    assert all(line in text for line in RAY_LINES + OURS) and "PlacementGroupCleaner pid=2" in text


def test_report_to_names_known_sinks_and_needs_the_client(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"report_to\[0\]: 'comet' is not accepted"):
        build_plan(data=tiny_sft_config(tmp_path, report_to=["comet"]))
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ConfigError, match=r"stage_configs.sft.report_to: mlflow is not installed"):
        build_plan(data=tiny_sft_config(tmp_path, report_to=["mlflow"]))


def test_report_section_validated(tmp_path):
    cfg = tiny_sft_config(tmp_path)
    cfg["report"] = {"prompts": ["hi"], "max_new_token": 5}
    with pytest.raises(ConfigError, match="did you mean 'max_new_tokens'"):
        build_plan(data=cfg)


def test_default_prompts_are_the_first_stages_held_out_rows(tmp_path, tiny_model_dir):
    from fnsft.models.handle import ModelHandle
    from fnsft.report.answers import record_answers

    plan = build_plan(data=tiny_sft_config(tmp_path, eval_split=0.1))
    sft = plan.stages[0].stage
    held_out = sft.split_eval([r for r in _rows()], None)["eval"]
    handle = ModelHandle(source=tiny_model_dir, fingerprint="base-fp")
    tok = handle.load_tokenizer()
    data = record_answers(str(tmp_path), ReportConfig(num_prompts=3, max_new_tokens=5), "base", "tiny",
                          "base-fp", handle, tok, sft.config, ["sft"])
    assert len(data["prompts"]) == 3
    assert data["prompts"][0].startswith(held_out[0]["prompt"][-1]["content"][:30])
    assert len(data["columns"][0]["answers"]) == 3 and data["columns"][0]["seconds"] >= 0
    # The same fingerprint again: kept, not generated twice.
    again = record_answers(str(tmp_path), ReportConfig(num_prompts=3, max_new_tokens=5), "base", "tiny",
                           "base-fp", None, tok, sft.config, ["sft"])
    assert again["columns"] == data["columns"]


def _rows():
    from fnsft.data.files import read_first_rows
    from fnsft.data.formats import to_prompt_completion

    rows = read_first_rows(os.path.join(EXAMPLES, "sample_data.jsonl"), n=100_000)
    return [to_prompt_completion(r, "alpaca") for r in rows]


def test_tracked_params_never_hold_credentials():
    from fnsft.report.tracking import flat_params

    params = flat_params({"stage_configs": {"rlaif": {"judge": {"api_key": "sk-x", "api_key_env": "OPENAI_API_KEY",
                                                                "model": "gpt"}}}, "seed": 1})
    assert params == {"stage_configs.rlaif.judge.api_key_env": "OPENAI_API_KEY",
                      "stage_configs.rlaif.judge.model": "gpt", "seed": "1"}
