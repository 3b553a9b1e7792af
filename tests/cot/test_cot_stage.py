"""The cot_distillation stage end to end on the tiny model (real Ray, real Ray Train)."""

import json
import os

import pytest

from fnsft.pipeline import Pipeline
from fnsft.testing import TINY

HERE = os.path.dirname(os.path.abspath(__file__))


def tiny_cot_config(tmp_path, **stage):
    import sys

    sys.path.insert(0, HERE)
    import legs

    legs.make(tmp_path / "train.jsonl", 48, seed=0)
    legs.make(tmp_path / "eval.jsonl", 16, seed=1)
    cfg = {
        "reasoning_dataset_path": str(tmp_path / "train.jsonl"),
        "eval_dataset_path": str(tmp_path / "eval.jsonl"),
        "teacher_model_type": "function", "teacher_model_path": os.path.join(HERE, "legs.py") + ":solve",
        "num_samples_per_question": 1, "num_train_epochs": 10, "learning_rate": 5e-3,
        "per_device_train_batch_size": 8, "max_length": 96, "eval_max_new_tokens": 32,
        "save_steps": 0, "report_to": ["none"], "logging_steps": 10,
    }
    cfg.update(stage)
    return {"model_name_or_path": TINY, "output_dir": str(tmp_path / "out"), "stages": ["cot_distillation"],
            "resources": {"num_workers": 1}, "deepspeed": {"enabled": False},
            "stage_configs": {"cot_distillation": cfg}}


@pytest.mark.slow
def test_tiny_student_learns_to_answer(tmp_path, ray_session):
    summary = Pipeline.from_dict(tiny_cot_config(tmp_path)).run()
    stage = summary["stages"]["cot_distillation"]
    assert stage["status"] == "completed"
    m = stage["metrics"]
    assert m["kept_rationales"] == 48 and m["teacher_accuracy"] == 1.0
    assert m["student_accuracy_before"] == 0.0
    assert m["student_accuracy_after"] >= 0.75, m
    assert m["eval_loss"] < 0.2 * m["before_eval_loss"], m
    out = os.path.dirname(stage["model_path"])
    assert os.path.isfile(os.path.join(out, "cot_distillation.png"))
    after = [json.loads(line) for line in open(os.path.join(out, "eval_after.jsonl"))]
    assert sum(r["correct"] for r in after) == round(16 * m["student_accuracy_after"])


@pytest.mark.slow
def test_guide_example2_reasoning_pipeline(tmp_path, ray_session):
    """configs/reasoning_pipeline.yaml (sft -> cot_distillation -> dpo) on the tiny model, fewer steps."""
    import yaml

    from fnsft.testing import REPO

    cfg = yaml.safe_load(open(os.path.join(REPO, "configs", "reasoning_pipeline.yaml")))
    cfg.update(model_name_or_path=TINY, output_dir=str(tmp_path / "out"))
    eval_rows = open(os.path.join(REPO, "examples", "reasoning", "eval.jsonl")).readlines()[:8]
    (tmp_path / "eval.jsonl").write_text("".join(eval_rows))
    stages = cfg["stage_configs"]
    for name, stage in stages.items():
        for k, v in list(stage.items()):
            if isinstance(v, str) and v.startswith("examples/"):
                stage[k] = os.path.join(REPO, v.split(":")[0]) + (":" + v.split(":")[1] if ":" in v else "")
        stage.update(max_steps=4, report_to=["none"])
    stages["cot_distillation"].update(max_questions=24, eval_dataset_path=str(tmp_path / "eval.jsonl"),
                                      eval_max_new_tokens=24)
    summary = __import__("fnsft.pipeline", fromlist=["Pipeline"]).Pipeline.from_dict(cfg).run()
    assert [summary["stages"][s]["status"] for s in ("sft", "cot_distillation", "dpo")] == ["completed"] * 3
    m = summary["stages"]["cot_distillation"]["metrics"]
    assert m["kept_rationales"] == 24 and m["teacher_accuracy"] == 1.0 and "student_accuracy_after" in m
    records = os.path.join(summary["stages"]["cot_distillation"]["output_dir"], "rationales.jsonl")
    assert sum(1 for _ in open(records)) == 24


@pytest.mark.slow
@pytest.mark.long  # CI: the two tests above (the same stage and teacher path)
def test_tiny_student_learns_two_task_format(tmp_path, ray_session):
    """output_format: two_task (distilling step-by-step): each kept rationale makes a
    ``[rationale] q`` and an ``[answer] q`` example; the student is asked ``[answer] q`` and its
    first line is read as the answer."""
    summary = Pipeline.from_dict(tiny_cot_config(tmp_path, output_format="two_task")).run()
    stage = summary["stages"]["cot_distillation"]
    m = stage["metrics"]
    assert m["kept_rationales"] == 48 and m["student_train_rows"] == 96, m  # two tasks per rationale
    assert m["student_accuracy_before"] == 0.0
    assert m["student_accuracy_after"] >= 0.75, m
    out = os.path.dirname(stage["model_path"])
    after = [json.loads(line) for line in open(os.path.join(out, "eval_after.jsonl"))]
    right = [r for r in after if r["correct"]]
    # the answer is the completion's first line, not a '####' line after a rationale
    assert right and all(r["completion"].strip().splitlines()[0].strip() == r["gold_answer"] for r in right), right[:2]
