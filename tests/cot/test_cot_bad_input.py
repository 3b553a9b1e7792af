"""Bad CoT input: one line naming the key, before Ray starts (and in --dry_run)."""

import os

import pytest
import yaml

from fnsft.errors import ConfigError
from fnsft.pipeline import Pipeline
from fnsft.testing import REPO, TINY, run_cli

TRAIN = os.path.join(REPO, "examples", "reasoning", "train.jsonl")
SOLVE = os.path.join(REPO, "examples", "reasoning", "teacher.py") + ":solve"
KEY = "stage_configs.cot_distillation"


def _cfg(tmp_path, **stage):
    cot = {"reasoning_dataset_path": TRAIN, "teacher_model_type": "function", "teacher_model_path": SOLVE}
    cot.update(stage)
    for k in [k for k, v in cot.items() if v is None]:
        del cot[k]
    return {"model_name_or_path": TINY, "output_dir": str(tmp_path / "out"), "stages": ["cot_distillation"],
            "stage_configs": {"cot_distillation": cot}}


def _no_answers(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "1+1?"}\n')
    return str(path)


@pytest.mark.parametrize("stage,needle", [
    ({"reasoning_dataset_path": None}, f"{KEY}.reasoning_dataset_path: required key is missing"),
    ({"reasoning_dataset_path": "NOANSWERS"}, f"{KEY}.reasoning_dataset_path: "),
    ({"teacher_model_type": "openai"}, f"{KEY}.teacher_model_type: unknown type 'openai' (accepted: local, api, function)"),
    ({"teacher_model_type": "api", "teacher_model_path": ""}, f"{KEY}.teacher_model_path: missing"),
    ({"teacher_model_type": "api", "teacher_model_path": "gpt-4"}, f"{KEY}.teacher_base_url: no endpoint"),
    ({"teacher_model_type": "api", "teacher_model_path": "gpt-4", "teacher_base_url": "http://127.0.0.1:9/v1",
      "api_key_env": "FNSFT_TEST_UNSET_KEY"}, f"{KEY}.api_key_env: environment variable FNSFT_TEST_UNSET_KEY"),
    ({"teacher_prompt_template": "Solve: {problem}"}, f"{KEY}.teacher_prompt_template: the template must contain {{question}}"),
    ({"teacher_model_path": "examples/nowhere.py:solve"}, f"{KEY}.teacher_model_path: file examples/nowhere.py not found"),
    ({"teacher_model_type": "local", "teacher_model_path": "./no/such/model"}, f"{KEY}.teacher_model_path: model directory"),
    ({"answer_extraction": "xml"}, f"{KEY}.answer_extraction: unknown method 'xml'"),
    ({"output_format": "json"}, f"{KEY}.output_format: unknown 'json'"),
])
def test_bad_input_one_line(tmp_path, monkeypatch, stage, needle):
    stage = dict(stage)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    if stage.get("reasoning_dataset_path") == "NOANSWERS":
        stage["reasoning_dataset_path"] = _no_answers(tmp_path)
    with pytest.raises(ConfigError) as e:
        Pipeline.from_dict(_cfg(tmp_path, **stage))
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)
    if str(stage.get("reasoning_dataset_path") or "").endswith("q.jsonl"):
        assert "has no answer column" in str(e.value)


def test_no_answers_is_fine_with_self_consistency(tmp_path):
    Pipeline.from_dict(_cfg(tmp_path, reasoning_dataset_path=_no_answers(tmp_path), verify_answers=False))


def test_cli_dry_run_one_line_without_ray(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_cfg(tmp_path, teacher_model_type="api", teacher_model_path="gpt-4")))
    r = run_cli("--config", str(path), "--dry_run", env={"OPENAI_BASE_URL": ""})
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and f"{KEY}.teacher_base_url" in lines[0], r.stderr
    assert "RAY_IMPORTED=False" in r.stdout and not os.path.exists(tmp_path / "out")
    ok = run_cli("--config", str(path), "--dry_run", env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    assert ok.returncode == 0 and "teacher: api: gpt-4 at OPENAI_BASE_URL" in ok.stdout, ok.stdout + ok.stderr


@pytest.mark.parametrize("answers", [True, False])
def test_plan_reads_the_columns_whether_or_not_validation_ran(tmp_path, answers):
    """The plan's columns come from the data's first rows, not from what validation left on the stage."""
    from fnsft.pipeline.plan import build_plan

    path = TRAIN if answers else _no_answers(tmp_path)
    planned = build_plan(data=_cfg(tmp_path, reasoning_dataset_path=path, verify_answers=answers)).stages[0]
    plan = planned.stage.describe_plan()
    assert plan["data"] == f"{path} (question: question, answer: {'answer' if answers else 'none'})", plan["data"]
    assert ("against the gold answer" in plan["filter"]) is answers
    fresh = type(planned.stage)(planned.config, planned.stage.pipeline_config)  # never validated
    assert fresh.describe_plan() == plan
