"""What the console shows when something fails: the one line the error carries, never Ray's
``ray::Actor.method() (pid=…`` wrapper, and never a log file that was not written (no Ray)."""

from __future__ import annotations

import os

import ray.exceptions
import yaml

from fnsft.cli import pipeline_main
from fnsft.utils.one_line import error_line
from fnsft.errors import StageError
from fnsft.testing import tiny_sft_config


def _from_actor(cause: BaseException) -> BaseException:
    """The exception ``ray.get`` raises when an actor method raised ``cause`` (as Ray builds it)."""
    try:
        raise cause
    except BaseException as e:  # noqa: BLE001
        return ray.exceptions.RayTaskError(
            "ApiClient.chat", "Traceback (most recent call last):\n  File \"api_client.py\"\n", e,
            proctitle="ray::ApiClient.chat()", pid=4242, ip="10.0.0.7").as_instanceof_cause()


def test_an_actors_error_shows_its_own_line():
    e = _from_actor(StageError("judge: max_judge_calls=10 spent; raise it to go on"))
    assert isinstance(e, StageError)  # the CLI's `except FnsftError` catches it
    assert error_line(e) == "judge: max_judge_calls=10 spent; raise it to go on"
    e = _from_actor(ValueError("bad row 3: no 'prompt'"))
    assert error_line(e) == "ValueError: bad row 3: no 'prompt'"
    # Wrapped twice (an actor calling another actor): still the innermost line.
    assert error_line(_from_actor(_from_actor(KeyError("role")))) == "KeyError: 'role'"


def test_a_data_error_before_the_run_folder_exists_names_no_log_file(tmp_path, capsys):
    data = tmp_path / "bad.jsonl"
    data.write_bytes(b'{"text": "\xff\xfe"}\n')  # not UTF-8
    out = tmp_path / "run"
    cfg = tmp_path / "pipeline.yaml"
    cfg.write_text(yaml.safe_dump(tiny_sft_config(out, dataset_name_or_path=str(data))))
    rc = pipeline_main(["--config", str(cfg), "--dry_run"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1, err
    assert "UnicodeDecodeError" in err and "pipeline_training.log" not in err
    assert not os.path.exists(out / "pipeline_training.log")


def test_the_summary_records_the_actors_error_with_its_type():
    e = _from_actor(StageError("judge: no answer parsed in 8 tries"))
    assert error_line(e, typed=True) == "StageError: judge: no answer parsed in 8 tries"
