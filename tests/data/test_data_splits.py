"""Bounded evaluation: the held-out rows are the ``eval_split`` share capped at ``eval_max_rows``,
and the plan and the log say how many and why (no Ray)."""

from __future__ import annotations

import json

import pytest

from fnsft.data.splits import cap_eval_rows, held_out_count, split_held_out
from fnsft.pipeline.plan import build_plan
from fnsft.testing import tiny_sft_config


def test_share_is_capped_and_says_why():
    assert held_out_count(20_000, 0.1, 256)[0] == 256
    n, why = held_out_count(20_000, 0.1, 256)
    assert "eval_split 0.1 would be 2000" in why and "eval_max_rows: 256" in why
    assert held_out_count(1_000, 0.1, 256)[0] == 100  # under the cap: the share itself
    assert held_out_count(20_000, 0.1, None)[0] == 2000  # null: no cap
    assert held_out_count(3, 0.5, 256)[0] == 0 and held_out_count(100, 0.0, 256)[0] == 0


def test_split_is_disjoint_and_seeded():
    rows = list(range(5000))
    a = split_held_out(rows, 0.1, 256, seed=7)
    assert len(a.eval) == 256 and len(a.train) == 5000 - 256
    assert sorted(a.train + a.eval) == rows
    assert split_held_out(rows, 0.1, 256, seed=7) == a
    assert split_held_out(rows, 0.1, 256, seed=8).eval != a.eval
    # A larger cap keeps the same first rows: raising eval_max_rows only adds held-out rows.
    assert split_held_out(rows, 0.1, 400, seed=7).eval[:256] == a.eval


def test_eval_file_is_capped_too():
    held = cap_eval_rows(list(range(1000)), 256, "eval.jsonl")
    assert held.eval == list(range(256)) and "first 256 of 1000 rows of eval.jsonl" in held.reason
    assert cap_eval_rows(list(range(10)), 256, "eval.jsonl").eval == list(range(10))


def _alpaca(path, n):
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"instruction": f"Say {i}.", "output": f"{i}"}) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def tokenizer():
    from fnsft.models.builtin import materialize_builtin
    from fnsft.models.loading import load_tokenizer

    return load_tokenizer(materialize_builtin("builtin:tiny-llama"))


def test_sft_stage_holds_out_at_most_eval_max_rows(tmp_path, tokenizer, fnsft_log):
    data = _alpaca(tmp_path / "d.jsonl", 3000)
    plan = build_plan(data=tiny_sft_config(tmp_path / "o", dataset_name_or_path=data))  # eval_split 0.1
    stage = plan.stages[0].stage
    assert stage.describe_plan()["eval"] == "10% held out, at most 256 rows (eval_max_rows)"
    split, info = stage.prepare_data(tokenizer)
    assert len(split["eval"]) == 256 and len(split["train"]) == 3000 - 256 and info["eval_rows"] == 256
    assert "[sft] eval: 256 of 3000 rows held out: eval_split 0.1 would be 300" in fnsft_log.text

    uncapped = build_plan(data=tiny_sft_config(tmp_path / "o2", dataset_name_or_path=data,
                                               eval_max_rows=None)).stages[0].stage
    assert uncapped.describe_plan()["eval"] == "10% held out"
    assert len(uncapped.prepare_data(tokenizer)[0]["eval"]) == 300

    eval_file = _alpaca(tmp_path / "e.jsonl", 50)
    own = build_plan(data=tiny_sft_config(tmp_path / "o3", dataset_name_or_path=data, eval_dataset_path=eval_file,
                                          eval_max_rows=20)).stages[0].stage
    split = own.prepare_data(tokenizer)[0]
    assert len(split["train"]) == 3000 and len(split["eval"]) == 20
