"""The guide's plugin contract, end to end on the tiny model and a real local Ray.

``plugins/guide_my_stage.py`` is the guide's "Extending the Pipeline" example, its two code blocks
copied unmodified (the stage body is ``pass``: it returns ``None``). It runs between two built-in
stages; beside it a stage written the same way scales a layer through ``model`` (a handle used
as a transformers model) and the next stages receive the change.
"""

from __future__ import annotations

import glob
import json
import os

import pytest
import yaml

from fnsft.cli import pipeline_main
from fnsft.testing import EXAMPLES, TINY

HERE = os.path.dirname(os.path.abspath(__file__))
GUIDE = os.path.join(HERE, "plugins", "guide_my_stage.py")
EDIT = os.path.join(HERE, "plugins", "edit_stages.py")


def _summary(out):
    with open(os.path.join(out, "pipeline_summary.json")) as f:
        return json.load(f)


def _sha_of_dir(path):
    from transformers import AutoModelForCausalLM

    from fnsft.models.checksum import weights_sha256

    return weights_sha256(AutoModelForCausalLM.from_pretrained(path).state_dict())


def test_guide_example_is_verbatim_and_loads(tmp_path):
    """The plugin file is the guide's code (no imports of dataclass/field added) and validates."""
    text = open(GUIDE).read()
    assert text.startswith("from fnsft.stages.base import BaseStage, StageConfig, StageResult\n\n@dataclass")
    assert "import dataclass" not in text and "        pass\nfrom fnsft.pipeline import Pipeline" in text
    from fnsft.pipeline.plan import build_plan

    plan = build_plan(data={"model_name_or_path": TINY, "output_dir": str(tmp_path / "o"),
                            "plugins": [GUIDE], "stages": ["my_stage"],
                            "stage_configs": {"my_stage": {"my_parameter": "value"}}})
    assert plan.stages[0].config.my_parameter == "value"


@pytest.mark.slow
def test_guide_stage_in_place_edit_chat_fallback_disk_and_edited_data(tmp_path, ray_session, no_template_model):
    """One pipeline for the whole contract (one SFT and one DPO job keep the suite short):

    sft -> my_stage (the guide's code, verbatim) -> scale_layer (edits weights through ``model``)
    -> probe (returns previous_result) -> probe_disabled (enabled: false) -> dpo, on the tiny model
    saved WITHOUT a chat template, with an rl section kept while rl is not in stages.
    """
    out = tmp_path / "run"
    prefs = tmp_path / "prefs.jsonl"
    rows = open(os.path.join(EXAMPLES, "preferences.jsonl")).read().splitlines()[:12]
    prefs.write_text("\n".join(rows) + "\n")
    common = {"report_to": ["none"], "eval_split": 0, "max_length": 96, "per_device_train_batch_size": 4}
    cfg = {
        "model_name_or_path": no_template_model, "output_dir": str(out), "plugins": [GUIDE, EDIT],
        "resources": {"num_workers": 1},
        "stages": ["sft", "my_stage", "scale_layer", "probe", "probe_disabled", "dpo"],
        "stage_configs": {
            "sft": {**common, "dataset_name_or_path": os.path.join(EXAMPLES, "formats", "messages.jsonl"),
                    "max_steps": 4, "save_steps": 2, "learning_rate": 3e-3},
            "dpo": {**common, "preference_dataset_path": str(prefs), "max_steps": 2, "save_steps": 1},
            "my_stage": {"my_parameter": "value"}, "scale_layer": {"factor": 3.0},
            "probe_disabled": {"enabled": False},
            # "gradually add more stages": rl is commented out of stages, its section stays.
            "rl": {"dataset_name_or_path": "prompts_for_later.jsonl", "num_iterations": 5},
        },
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert pipeline_main(["--config", str(path)]) == 0

    s = _summary(out)
    st = s["stages"]
    for name in ("sft", "my_stage", "scale_layer", "probe", "dpo"):
        assert st[name]["status"] == "completed", (name, st[name])
    log_text = (out / "pipeline_training.log").read_text()
    # The guide's stage returned None: its input went on unchanged, with a warning.
    assert "Stage my_stage: execute() returned None; handing its input model on unchanged" in log_text
    sft_model = os.path.join(out, "01_sft", "model")
    assert st["my_stage"]["model_path"] == sft_model
    sft_sha = _sha_of_dir(sft_model)
    # scale_layer used model.parameters()/.model.layers/.generate/.save_pretrained on the handle.
    scale = st["scale_layer"]["metrics"]
    assert scale["n_params"] > 0 and scale["generated_tokens"] > 0 and scale["saved_copy"] is True
    assert scale["weights_sha256"] != sft_sha
    # The next stages received the scaled weights (probe returned previous_result as is).
    assert st["probe"]["metrics"]["incoming_sha256"] == scale["weights_sha256"]
    assert _sha_of_dir(st["scale_layer"]["model_path"]) == scale["weights_sha256"]
    assert st["probe"]["metrics"]["tokenizer_class"] != "ModelHandle"
    # Disabled and commented-out stages: one line each and an entry in the summary.
    assert st["probe_disabled"]["status"] == "not run: disabled"
    assert "Stage probe_disabled disabled (enabled: false); not run" in log_text
    assert s["not_in_stages"] == ["rl"]
    assert "stage_configs.rl is kept but the stage is not in stages; not run" in log_text

    # No chat template: SFT (conversations) and DPO ran on the ChatML fallback, said once, and
    # SFT saved it with its model for the next stages.
    assert log_text.count("has no chat template; stages that format chats use the default chatml template") == 1
    assert os.path.isfile(os.path.join(sft_model, "chat_template.jinja"))

    # Bounded disk: checkpoints were written while the stages ran and are gone after success.
    for name, folder in (("sft", "01_sft"), ("dpo", "06_dpo")):
        assert st[name]["checkpoint_bytes_removed"] > 0
        assert not glob.glob(str(out / folder / "trainer" / "checkpoint-*"))
        assert not os.path.exists(out / folder / ".scratch")
    assert not glob.glob(str(out / "ray_train" / "*"))
    assert all(st[n]["disk_bytes"] > 0 for n in ("sft", "scale_layer", "dpo"))
    assert s["disk_bytes"] >= st["sft"]["disk_bytes"] + st["dpo"]["disk_bytes"]

    # Edit the DPO data in place (same path): DPO re-runs, every stage before it is reused.
    prefs.write_text("\n".join(rows[:10]) + "\n")
    assert pipeline_main(["--config", str(path)]) == 0
    st = _summary(out)["stages"]
    for name in ("sft", "my_stage", "scale_layer", "probe"):
        assert st[name]["status"] == "skipped (completed)", (name, st[name])
    assert st["dpo"]["status"] == "completed"


@pytest.mark.slow
def test_stage_result_success_false_fails_the_pipeline(tmp_path, ray_session, capsys):
    cfg = {"model_name_or_path": TINY, "output_dir": str(tmp_path / "o"), "plugins": [EDIT],
           "stages": ["probe", "fail_stage"], "stage_configs": {"fail_stage": {"reason": "labels missing"}}}
    path = tmp_path / "f.yaml"
    path.write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    assert pipeline_main(["--config", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "fnsft: error: stage fail_stage failed: labels missing"
    st = _summary(tmp_path / "o")["stages"]
    assert st["fail_stage"]["status"] == "failed" and "labels missing" in st["fail_stage"]["error"]
