"""The streaming path's batch function (fnsft/data/tokenize.py) tokenizes as TRL does (no Ray).

TRL skips its own tokenization when a set already has ``input_ids`` (``is_processed``), so the
batch function's output must give TRL the very same training examples: after TRL's own
preparation (labels from ``completion_mask``, truncation), the input ids and labels of our
pre-tokenized rows equal those of the raw rows TRL tokenizes itself.
"""

from __future__ import annotations

import json
import os

import pytest

from fnsft.testing import EXAMPLES


@pytest.fixture(scope="module")
def tiny():
    from fnsft.models.builtin import materialize_builtin

    return materialize_builtin("builtin:tiny-llama")


def _trl_prepared(tiny, rows, max_length):
    """TRL's own prepared training set (input_ids, labels) for ``rows`` (a tiny model, no training),
    with the stage's ``completion_only_loss`` said explicitly (TRL infers it from a ``prompt``
    column, which processed rows lack)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from fnsft.models.loading import load_tokenizer

    args = SFTConfig(output_dir="/tmp/unused-fnsft-tokenize-test", use_cpu=True, bf16=False, report_to="none",
                     max_length=max_length, max_steps=1, dataset_text_field="text",
                     completion_only_loss=None if "text" in rows[0] else True)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny), args=args,
                         train_dataset=Dataset.from_list(rows), processing_class=load_tokenizer(tiny))
    return [(r["input_ids"], r["labels"]) for r in trainer.train_dataset]


def _batch_fn(tiny, fmt, max_length=64, **kw):
    from fnsft.data.tokenize import SFTTokenizeBatch

    return SFTTokenizeBatch(tiny, fmt=fmt, max_length=max_length, source="test", **kw)


def test_tokens_equal_trls_own_on_the_sample_data(tiny):
    import pyarrow as pa

    from fnsft.data.formats import to_prompt_completion

    with open(os.path.join(EXAMPLES, "sample_data.jsonl")) as f:
        lines = [line for line in f if line.strip()][:40]
    fn = _batch_fn(tiny, "alpaca", max_length=48, json_lines=True)
    table = fn(pa.Table.from_pylist([{"text": line} for line in lines]))  # JSON Lines, as read_text gives them
    ours = table.to_pylist()
    assert len(ours) == len(lines)
    converted = [to_prompt_completion(json.loads(line), "alpaca") for line in lines]
    trl = _trl_prepared(tiny, converted, max_length=48)
    # Our processed rows through TRL's preparation (labels from completion_mask, truncation).
    ours_prepared = _trl_prepared(tiny, [{"input_ids": r["input_ids"], "completion_mask": r["completion_mask"]}
                                         for r in ours], max_length=48)
    assert ours_prepared == trl
    # The prompt is masked: the first label is -100 and some are not (the answer).
    assert all(labels[0] == -100 and any(x != -100 for x in labels) for _, labels in trl)
    # length/truncated are counted before TRL truncates to max_length.
    assert [r["length"] for r in ours] == [len(r["input_ids"]) for r in ours]
    assert sum(r["truncated"] for r in ours) == sum(r["length"] > 48 for r in ours) > 0
    assert max(len(ids) for ids, _ in trl) == 48


@pytest.mark.parametrize("fmt,rows", [
    ("prompt_completion", [{"prompt": "2 + 2 =", "completion": " 4"}, {"prompt": "Say hi:", "completion": " hi"}]),
    ("text", [{"text": "plain text trained on every token"}, {"text": "another line"}]),
])
def test_plain_strings_get_trls_eos_and_mask(tiny, fmt, rows):
    fn = _batch_fn(tiny, fmt)
    ours = fn.rows(rows)
    keep = ("input_ids", "completion_mask") if fmt != "text" else ("input_ids",)
    assert _trl_prepared(tiny, [{k: r[k] for k in keep} for r in ours], 64) == _trl_prepared(tiny, rows, 64)
    assert all(r["input_ids"][-1] == fn.tokenizer.eos_token_id for r in ours)


def test_excluded_rows_and_bad_lines(tiny):
    from fnsft.data.tokenize import row_id
    from fnsft.errors import ConfigError

    rows = [{"prompt": "a", "completion": " b"}, {"prompt": "c", "completion": " d"}]
    first = _batch_fn(tiny, "prompt_completion").rows(rows)
    assert first[0]["row_id"] == row_id(first[0]["input_ids"]) != first[1]["row_id"]
    kept = _batch_fn(tiny, "prompt_completion", exclude=[first[0]["row_id"]]).rows(rows)
    assert [r["row_id"] for r in kept] == [first[1]["row_id"]]
    with pytest.raises(ConfigError, match="invalid JSON"):
        _batch_fn(tiny, "alpaca", json_lines=True).rows([{"text": '{"instruction": '}])
    with pytest.raises(ConfigError, match="missing column 'output'"):
        _batch_fn(tiny, "alpaca", json_lines=True).rows([{"text": '{"instruction": "x"}'}])


def test_a_bad_streamed_row_names_its_file_and_line(tiny, tmp_path):
    """Ray Data's read_text gives a row's file (include_paths), not its line: the error path finds it."""
    from fnsft.errors import ConfigError

    good = '{"instruction": "Say hi.", "output": "Hi."}'
    lines = [good] * 6 + ['{"instruction": "Say hi.", "output": '] + [good] * 3 + ['{"instruction": "only"}']
    path = tmp_path / "deep.jsonl"
    path.write_text("\n".join(lines) + "\n")
    fn = _batch_fn(tiny, "alpaca", json_lines=True)
    with pytest.raises(ConfigError, match=rf"data file {path} line 7: invalid JSON") as e:
        fn.rows([{"text": line, "path": str(path)} for line in lines[:7]])
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=rf"data file {path} line 11: .*missing column 'output'"):
        fn.rows([{"text": lines[-1], "path": str(path)}])
    # a .json list's records are named by the reader
    with pytest.raises(ConfigError, match=r"data file x\.json record 3: .*missing column 'output'"):
        fn.rows([{"text": lines[-1], "where": "x.json record 3"}])
