"""``data_streaming`` before Ray starts (no Ray): what it refuses, with one line each, and the
epochs-to-steps arithmetic the streamed stage trains with."""

from __future__ import annotations

import pytest

from fnsft.errors import ConfigError
from fnsft.pipeline.plan import build_plan
from fnsft.testing import tiny_sft_config


def _plan(tmp_path, **sft):
    return build_plan(data=tiny_sft_config(tmp_path / "o", data_streaming=True, **sft))


@pytest.mark.parametrize("sft,key,says", [
    ({"packing": True}, "packing", "not built with data_streaming"),
    ({"skip_bad_rows": True}, "skip_bad_rows", "not built with data_streaming"),
    ({"eval_max_rows": None}, "eval_max_rows", "give a number of rows"),
    ({"train_sampling_strategy": "group_by_length"}, "train_sampling_strategy", "stream order"),
    ({"dataset_name_or_path": "someone/some-hub-set"}, "dataset_name_or_path", "not hub or generated sets"),
])
def test_unsupported_options_are_refused_in_one_line(tmp_path, sft, key, says):
    with pytest.raises(ConfigError) as e:
        _plan(tmp_path, **sft)
    msg = str(e.value)
    assert f"stage_configs.sft.{key}" in msg and says in msg and "\n" not in msg


def test_streaming_plan_and_batching_say_so(tmp_path):
    plan = _plan(tmp_path)
    stage = plan.stages[0].stage
    assert stage.config.data_streaming and stage.data_format() == "alpaca"
    assert "stream order" in stage.batching(on_gpu=False).describe()
    # Off by default: nothing changes for existing configs.
    default = build_plan(data=tiny_sft_config(tmp_path / "d")).stages[0].stage
    assert not default.config.data_streaming and default.batching(on_gpu=False).train_sampling_strategy == \
        "group_by_length"


def test_epochs_become_steps_from_the_row_count():
    from fnsft.data.ingest import steps_for_epochs

    # 270 rows, 2 workers (135 each), batch 8: 17 micro-batches an epoch, as HF counts them in memory.
    assert steps_for_epochs(270, 2, 8, 1, 2) == 34
    assert steps_for_epochs(270, 2, 8, 2, 1) == 9  # 17 micro-batches, 2 per step
    assert steps_for_epochs(10, 1, 4, 1, 0.5) == 2
    assert steps_for_epochs(0, 2, 8, 1, 1) == 1  # never zero steps
