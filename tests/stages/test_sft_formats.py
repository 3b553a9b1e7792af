"""Every SFT data format through the stage's own validation and data preparation (no Ray)."""

from __future__ import annotations

import os

import pytest

from fnsft.errors import ConfigError
from fnsft.pipeline.plan import build_plan
from fnsft.testing import EXAMPLES, tiny_sft_config

FORMATS = os.path.join(EXAMPLES, "formats")


def _stage(tmp_path, path, **kw):
    plan = build_plan(data=tiny_sft_config(tmp_path / "o", dataset_name_or_path=path, eval_split=0, **kw))
    return plan.stages[0].stage


@pytest.fixture(scope="module")
def tokenizer():
    from fnsft.models.builtin import materialize_builtin
    from fnsft.models.loading import load_tokenizer

    return load_tokenizer(materialize_builtin("builtin:tiny-llama"))


@pytest.mark.parametrize("name,fmt", [
    ("alpaca.jsonl", "alpaca"), ("alpaca.csv", "alpaca"), ("alpaca.parquet", "alpaca"),
    ("sharegpt.jsonl", "sharegpt"), ("messages.jsonl", "messages"),
    ("prompt_completion.jsonl", "prompt_completion"), ("text.jsonl", "text"),
])
def test_format_detected_and_prepared(tmp_path, tokenizer, name, fmt):
    stage = _stage(tmp_path, os.path.join(FORMATS, name))
    assert stage.data_format() == fmt
    data, info = stage.prepare_data(tokenizer)
    assert info["dataset_format"] == fmt
    rows = data["train"]
    assert rows and "eval" not in data
    if fmt == "text":
        assert all(set(r) == {"text"} for r in rows)
    else:
        assert all(set(r) == {"prompt", "completion"} for r in rows)
        if fmt != "prompt_completion":  # conversational: completion is the last assistant turn
            assert all(r["completion"][-1]["role"] == "assistant" for r in rows)
    assert stage.describe_plan()["data"].startswith(os.path.join(FORMATS, name))


def test_folder_of_files(tmp_path, tokenizer):
    folder = tmp_path / "data"
    folder.mkdir()
    src = open(os.path.join(FORMATS, "alpaca.jsonl")).read()
    (folder / "a.jsonl").write_text(src)
    (folder / "b.jsonl").write_text(src)
    data, info = _stage(tmp_path, str(folder)).prepare_data(tokenizer)
    assert len(data["train"]) == 2 * len(src.strip().splitlines())


def test_column_mapping(tmp_path, tokenizer):
    f = tmp_path / "qa.jsonl"
    f.write_text('{"question": "What is 1+1?", "answer": "2"}\n{"question": "Capital of France?", "answer": "Paris"}\n')
    stage = _stage(tmp_path, str(f), column_mapping={"question": "instruction", "answer": "output"})
    data, info = stage.prepare_data(tokenizer)
    assert info["dataset_format"] == "alpaca"
    assert data["train"][1]["completion"][0]["content"] == "Paris"


def test_mixed_file_is_a_clear_error(tmp_path):
    f = tmp_path / "mixed.jsonl"
    f.write_text('{"instruction": "a", "output": "b"}\n{"text": "plain"}\n')
    with pytest.raises(ConfigError) as e:
        _stage(tmp_path, str(f))
    msg = str(e.value)
    assert "mixed.jsonl" in msg and "\n" not in msg


def test_truncation_is_counted(tmp_path, tokenizer):
    stage = _stage(tmp_path, os.path.join(EXAMPLES, "sample_data.jsonl"), max_length=16)
    _, info = stage.prepare_data(tokenizer)
    assert info["truncated_examples"] > 0


def test_plan_and_chat_need_read_the_data_whether_or_not_validation_ran(tmp_path):
    """The format comes from the data's first rows each time it is asked, not from validation's leftovers."""
    planned = build_plan(data=tiny_sft_config(tmp_path / "o", dataset_name_or_path=os.path.join(
        FORMATS, "messages.jsonl"), eval_split=0)).stages[0]
    fresh = type(planned.stage)(planned.config, planned.stage.pipeline_config)  # never validated
    assert fresh.data_format() == "messages" and fresh.needs_chat_template()
    assert fresh.describe_plan() == planned.stage.describe_plan()
    assert "detected at run time" not in fresh.describe_plan()["data"]
