"""Restarting the workers (``resources.max_failures``, -1: forever) stops when the worker group
fails with the same error several times in a row: that error's one line ends the stage."""

from dataclasses import dataclass

import pytest

from fnsft.errors import StageError
from fnsft.runtime.repeated_failures import REPEATS, RepeatedFailureStop


def test_the_same_error_in_a_row_stops_with_its_line():
    cb = RepeatedFailureStop("sft")
    for _ in range(REPEATS - 1):
        cb.after_exception(None, {0: ValueError("bad shape 3"), 1: RuntimeError("collective aborted")})
    with pytest.raises(StageError) as err:
        cb.after_exception(None, {0: ValueError("bad shape 3")})
    line = str(err.value)
    assert line.startswith("ValueError: bad shape 3") and f"{REPEATS} times in a row" in line and "\n" not in line


def test_different_errors_and_worker_deaths_keep_restarting():
    import ray.exceptions

    cb = RepeatedFailureStop("sft")
    for i in range(3 * REPEATS):  # a new error each time: restarting may still help
        cb.after_exception(None, {0: ValueError(f"bad shape {i}")})
    for _ in range(3 * REPEATS):  # a lost node or a killed worker is what restarting is for
        cb.after_exception(None, {0: ray.exceptions.ActorDiedError()})
    cb.after_exception(None, {0: KeyError("x")})
    cb.after_exception(None, {0: KeyError("y")})  # the streak of KeyError('x') is broken
    cb.after_exception(None, {0: KeyError("x")})


def _always_fails(config):
    raise ValueError("the data has no column 'text'")


@dataclass
class _Config:
    output_dir: str


@pytest.mark.slow
def test_max_failures_forever_stops_on_a_repeated_error(ray_session, tmp_path):
    from fnsft.config.schema import ResourcesConfig
    from fnsft.runtime.handoff import get_handoff_store
    from fnsft.runtime.train_job import TrainJob, run_train_job

    job = TrainJob(stage_name="boom", stage_config=_Config(str(tmp_path)), model=None, data={},
                   worker_fn=_always_fails, deepspeed=None, use_gpu=False, torch_dtype="auto", store=get_handoff_store())
    res = ResourcesConfig(num_workers=1, cpus_per_worker=1, max_failures=-1)
    with pytest.raises(StageError) as err:
        run_train_job(job, res, str(tmp_path / "ray"))
    assert str(err.value).startswith("ValueError: the data has no column 'text'")
    assert f"{REPEATS} times in a row" in str(err.value)
