"""A real two/three-stage pipeline on local Ray: hand-off, layout, summary, log, resume."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from fnsft.cli import pipeline_main
from fnsft.testing import EXAMPLES, tiny_sft_config

HERE = os.path.dirname(os.path.abspath(__file__))
MY_STAGE = os.path.join(EXAMPLES, "custom_stage", "my_stage.py")
INTERRUPT = os.path.join(HERE, "plugins", "interrupt_stage.py")


def _sha_of_dir(path):
    from transformers import AutoModelForCausalLM

    from fnsft.models.checksum import weights_sha256

    return weights_sha256(AutoModelForCausalLM.from_pretrained(path).state_dict())


def _summary(out):
    with open(os.path.join(out, "pipeline_summary.json")) as f:
        return json.load(f)


@pytest.mark.slow
def test_sft_then_custom_stages_handoff_layout_and_resume(tmp_path, ray_session, capsys):
    out = tmp_path / "run"
    marker = tmp_path / "interrupt.marker"
    marker.write_text("x")
    cfg = tiny_sft_config(out, num_train_epochs=1)
    cfg["plugins"] = [MY_STAGE, INTERRUPT]
    cfg["stages"] = ["sft", "my_stage", "interrupt_once"]
    cfg["stage_configs"]["my_stage"] = {"my_parameter": "What is 2 + 2?"}
    cfg["stage_configs"]["interrupt_once"] = {"marker": str(marker)}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))

    # 1) The run is interrupted in the third stage, after sft and my_stage finished.
    rc = pipeline_main(["--config", str(path)])
    assert rc == 130
    s = _summary(out)
    assert s["stages"]["sft"]["status"] == "completed"
    assert s["stages"]["my_stage"]["status"] == "completed"
    assert s["stages"]["interrupt_once"]["status"] == "failed"

    # Layout: per-stage folders, the log, the resolved config, the manifest.
    sft_model = os.path.join(out, "01_sft", "model")
    for rel in ("01_sft/model/config.json", "01_sft/training_curves.png", "01_sft/log_history.json",
                "03_interrupt_once", "pipeline_training.log", "resolved_config.yaml",
                ".fnsft_manifest.json"):
        assert os.path.exists(os.path.join(out, rel)), rel
    assert any(f.endswith(".safetensors") for f in os.listdir(sft_model))
    log_text = (out / "pipeline_training.log").read_text()
    assert "=== Stage 1: sft ===" in log_text and "Stage sft completed" in log_text

    # The run report of the interrupted run: written, the failed stage flagged, answers so far.
    answers = json.loads((out / "report_answers.json").read_text())
    assert [c["stage"] for c in answers["columns"]] == ["base", "sft", "my_stage"]
    page = (out / "report.html").read_text()
    assert "interrupt_once: failed" in page and 'id="stage-sft"' in page

    # Hand-off: my_stage saw exactly the weights sft produced (not the base model's).
    sft_metrics = s["stages"]["sft"]["metrics"]
    assert sft_metrics["eval_loss"] < sft_metrics["before_eval_loss"]
    my = s["stages"]["my_stage"]["metrics"]
    assert my["incoming_from"] == "sft"
    assert my["weights_sha256"] == _sha_of_dir(sft_model)
    from fnsft.models.builtin import materialize_builtin

    assert my["weights_sha256"] != _sha_of_dir(materialize_builtin("builtin:tiny-llama"))

    # A pass-through stage (model=None) shares its input's saved copy instead of writing another.
    assert s["stages"]["my_stage"]["model_path"] == sft_model

    # 2) Rerun: finished stages are skipped, the interrupted one runs on the saved weights.
    capsys.readouterr()
    rc = pipeline_main(["--config", str(path), "--save_final_model"])
    assert rc == 0
    s = _summary(out)
    assert s["stages"]["sft"]["status"] == "skipped (completed)"
    assert s["stages"]["my_stage"]["status"] == "skipped (completed)"
    assert s["stages"]["interrupt_once"]["status"] == "completed"
    assert s["stages"]["interrupt_once"]["metrics"]["incoming_sha256"] == my["weights_sha256"]
    final = os.path.join(out, "final_model")
    assert os.path.isfile(os.path.join(final, "model.safetensors"))
    assert _sha_of_dir(final) == my["weights_sha256"]
    assert os.path.isfile(os.path.join(out, "03_interrupt_once", "model", "config.json"))
    # Resumed: the skipped stages keep their answers (same fingerprint), the new stage adds its own.
    answers2 = json.loads((out / "report_answers.json").read_text())
    assert [c["stage"] for c in answers2["columns"]] == ["base", "sft", "my_stage", "interrupt_once"]
    assert answers2["columns"][1] == answers["columns"][1]
    assert "base_model: builtin:tiny-llama" in open(os.path.join(final, "README.md")).read()

    # 3) A changed stage config re-runs that stage and everything after it, not before.
    rc = pipeline_main(["--config", str(path), "--set", "stage_configs.my_stage.my_parameter=Name a color.",
                        "--save_final_model", "--cleanup_intermediate"])
    assert rc == 0
    s = _summary(out)
    assert s["stages"]["sft"]["status"] == "skipped (completed)"
    assert s["stages"]["my_stage"]["status"] == "completed"
    assert s["stages"]["interrupt_once"]["status"] == "completed"
    # --cleanup_intermediate removed the stage copies, after final_model was written.
    assert os.path.isfile(os.path.join(final, "model.safetensors"))
    assert not os.path.exists(sft_model)
    assert not os.path.exists(os.path.join(out, "03_interrupt_once", "model"))
    assert s["stages"]["interrupt_once"]["model_path"] is None
