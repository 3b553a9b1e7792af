"""One pipeline per output_dir at a time: a second one refuses with one line naming the folder
and the run holding it; a lock left by a run that died is taken over (no Ray, no training)."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys

import pytest
import yaml

from fnsft.cli import pipeline_main
from fnsft.errors import ConfigError
from fnsft.testing import tiny_sft_config
from fnsft.utils.run_lock import LOCK_FILE, output_dir_lock


def _config(tmp_path, out):
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(tiny_sft_config(out)))
    return str(path)


def test_a_second_pipeline_on_a_busy_output_dir_refuses_with_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    # The first run, as its lock file shows it (another process: here this test, holding it).
    holder = open(out / LOCK_FILE, "a+")
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
    holder.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}))
    holder.flush()
    try:
        rc = pipeline_main(["--config", _config(tmp_path, out)])
    finally:
        holder.close()
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert str(out) in err and f"pid {os.getpid()}" in err and socket.gethostname() in err
    assert not (out / "pipeline_training.log").exists()  # it wrote nothing into the busy folder


def test_the_lock_is_released_after_a_run_and_a_dead_runs_lock_is_taken_over(tmp_path, caplog):
    out = str(tmp_path / "run")
    with output_dir_lock(out) as taken_over:
        assert taken_over is None
        with pytest.raises(ConfigError, match="in use by another fnsft run"):
            with output_dir_lock(out):
                pass
    with output_dir_lock(out) as taken_over:  # released: a rerun takes it, nothing to report
        assert taken_over is None
    # A run killed with SIGKILL: the OS dropped its flock, its lock file still names it.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(dead.stdout)
    with open(os.path.join(out, LOCK_FILE), "w") as f:
        json.dump({"pid": pid, "host": socket.gethostname(), "started": "earlier"}, f)
    with output_dir_lock(out) as taken_over:
        assert f"pid {pid}" in taken_over and "ended without releasing" in taken_over
