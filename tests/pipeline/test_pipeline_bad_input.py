"""Each class of bad input: a one-line error naming the key, exit code 2, no Ray, nothing written."""

from __future__ import annotations

import os

import pytest
import yaml

from fnsft.testing import EXAMPLES, run_cli, tiny_sft_config

CUSTOM = os.path.join(EXAMPLES, "custom_stage", "my_stage.py")


def _write(tmp_path, data, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return str(path)


def _check(result, *needles, out_dir=None):
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr  # one line, no traceback
    assert lines[0].startswith("fnsft: error: ")
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "RAY_IMPORTED=False" in result.stdout  # Ray was never started (not even imported)
    if out_dir is not None:
        assert not os.path.exists(out_dir)  # nothing written
    return lines[0]


def _base(tmp_path, **sft):
    return tiny_sft_config(tmp_path / "out", **sft)


def test_unknown_top_level_key_suggests(tmp_path):
    cfg = _base(tmp_path)
    cfg["output_dri"] = "x"
    line = _check(run_cli("--config", _write(tmp_path, cfg)), "config.output_dri", "did you mean 'output_dir'")
    assert "accepted keys" in line


def test_unknown_stage_key_suggests(tmp_path):
    cfg = _base(tmp_path, learning_rte=1e-3)
    _check(run_cli("--config", _write(tmp_path, cfg)), "stage_configs.sft.learning_rte",
           "did you mean 'learning_rate'", out_dir=str(tmp_path / "out"))


def test_wrong_type(tmp_path):
    cfg = _base(tmp_path, num_train_epochs="many")
    _check(run_cli("--config", _write(tmp_path, cfg)), "stage_configs.sft.num_train_epochs", "expected a number")


def test_wrong_choice(tmp_path):
    cfg = _base(tmp_path)
    cfg["deepspeed"] = {"zero_stage": 5}
    _check(run_cli("--config", _write(tmp_path, cfg)), "config.deepspeed.zero_stage", "expected one of")


def test_yaml_scientific_notation_is_a_number(tmp_path):
    # YAML reads 2e-4 (no dot) as a string; the schema still takes it as a float.
    cfg = _base(tmp_path)
    text = yaml.safe_dump(cfg).replace("learning_rate: 0.003", "learning_rate: 2e-4")
    result = run_cli("--config", _write(tmp_path, text), "--dry_run")
    assert result.returncode == 0, result.stderr
    assert "lr=0.0002" in result.stdout


def test_missing_required_field(tmp_path):
    cfg = _base(tmp_path)
    del cfg["stage_configs"]["sft"]["dataset_name_or_path"]
    _check(run_cli("--config", _write(tmp_path, cfg)), "stage_configs.sft.dataset_name_or_path",
           "required key is missing")


def test_stage_listed_without_its_config(tmp_path):
    cfg = _base(tmp_path)
    cfg["plugins"] = [CUSTOM]
    cfg["stages"] = ["sft", "my_stage"]  # and no stage_configs.my_stage section at all
    _check(run_cli("--config", _write(tmp_path, cfg)), "stage_configs.my_stage.my_parameter",
           "required key is missing")


def test_unknown_stage_lists_registered(tmp_path):
    cfg = _base(tmp_path)
    cfg["stages"] = ["sft", "spf"]
    line = _check(run_cli("--config", _write(tmp_path, cfg)), "unknown stage 'spf'", "registered stages:")
    assert "sft" in line.split("registered stages:")[1]


def test_config_for_a_stage_not_listed_is_kept_and_checked(tmp_path):
    # The guide's "add DPO later": the section stays while dpo is commented out of stages.
    cfg = _base(tmp_path)
    cfg["stage_configs"]["dpo"] = {"preference_dataset_path": "later.jsonl", "beta": 0.1}
    result = run_cli("--config", _write(tmp_path, cfg), "--dry_run")
    assert result.returncode == 0, result.stderr
    assert "dpo [not in stages: section checked, not run]" in result.stdout
    # ... but a typo in it is still caught, and so is a section for a stage that does not exist.
    cfg["stage_configs"]["dpo"]["betta"] = 0.2
    _check(run_cli("--config", _write(tmp_path, cfg)), "stage_configs.dpo.betta", "did you mean 'beta'")
    del cfg["stage_configs"]["dpo"]
    cfg["stage_configs"]["dop"] = {}
    _check(run_cli("--config", _write(tmp_path, cfg)), "stage_configs.dop", "did you mean 'dpo'")


def test_missing_dataset_file(tmp_path):
    cfg = _base(tmp_path, dataset_name_or_path=str(tmp_path / "nope.jsonl"))
    _check(run_cli("--config", _write(tmp_path, cfg)), "nope.jsonl", "not found")


def test_unknown_dataset_format_lists_columns(tmp_path):
    data = tmp_path / "weird.jsonl"
    data.write_text('{"question": "q", "reply": "a"}\n{"question": "q2", "reply": "b"}\n')
    cfg = _base(tmp_path, dataset_name_or_path=str(data))
    line = _check(run_cli("--config", _write(tmp_path, cfg)), "weird.jsonl", "columns found: question, reply")
    assert "alpaca" in line and "sharegpt" in line and "messages" in line


def test_stages_flag_names_unknown_stage(tmp_path):
    cfg = _base(tmp_path)
    _check(run_cli("--config", _write(tmp_path, cfg), "--stages", "sft", "dpo"), "--stages", "'dpo'")


def test_invalid_yaml_names_line(tmp_path):
    path = _write(tmp_path, "stages: [sft\nmodel_name_or_path: x\n")
    _check(run_cli("--config", path), "cfg.yaml:", "invalid YAML")


def test_config_file_not_found(tmp_path):
    _check(run_cli("--config", str(tmp_path / "missing.yaml")), "missing.yaml", "not found")


def test_bad_set_override(tmp_path):
    cfg = _base(tmp_path)
    _check(run_cli("--config", _write(tmp_path, cfg), "--set", "stage_configs.sft.max_steps=ten"),
           "stage_configs.sft.max_steps", "expected an integer")


def test_unknown_model(tmp_path):
    cfg = _base(tmp_path)
    cfg["model_name_or_path"] = "builtin:tiny-lama"
    _check(run_cli("--config", _write(tmp_path, cfg)), "model_name_or_path", "did you mean 'builtin:tiny-llama'")


def test_missing_model_dir(tmp_path):
    cfg = _base(tmp_path)
    cfg["model_name_or_path"] = str(tmp_path / "no_model")
    _check(run_cli("--config", _write(tmp_path, cfg)), "model_name_or_path", "not found")


def test_custom_stage_missing_required_parameter(tmp_path):
    cfg = _base(tmp_path)
    cfg["plugins"] = [CUSTOM]
    cfg["stages"] = ["sft", "my_stage"]
    cfg["stage_configs"]["my_stage"] = {}
    _check(run_cli("--config", _write(tmp_path, cfg)), "stage_configs.my_stage.my_parameter",
           "required key is missing", "My custom parameter")


def test_custom_stage_wrong_type(tmp_path):
    cfg = _base(tmp_path)
    cfg["plugins"] = [CUSTOM]
    cfg["stages"] = ["sft", "my_stage"]
    cfg["stage_configs"]["my_stage"] = {"my_parameter": ["a", "list"]}
    _check(run_cli("--config", _write(tmp_path, cfg)), "stage_configs.my_stage.my_parameter", "expected a string")


def test_missing_plugin(tmp_path):
    cfg = _base(tmp_path)
    cfg["plugins"] = ["./not_there.py"]
    _check(run_cli("--config", _write(tmp_path, cfg)), "plugins[0]", "not found")


def test_qlora_needs_peft(tmp_path):
    cfg = _base(tmp_path, load_in_4bit=True)
    _check(run_cli("--config", _write(tmp_path, cfg)), "load_in_4bit", "use_peft")


@pytest.mark.parametrize("flag", ["--dry_run", None])
def test_existing_outputs_untouched_on_bad_input(tmp_path, flag):
    out = tmp_path / "out"
    out.mkdir()
    (out / "pipeline_summary.json").write_text('{"keep": true}')
    cfg = _base(tmp_path, num_train_epochs="x")
    args = ["--config", _write(tmp_path, cfg)] + ([flag] if flag else [])
    _check(run_cli(*args))
    assert (out / "pipeline_summary.json").read_text() == '{"keep": true}'
    assert sorted(os.listdir(out)) == ["pipeline_summary.json"]
