"""``ray job stop`` / SIGTERM during a run: the summary says "stopped" and in which stage, the
process exits non-zero with one line (a real pipeline on local Ray, a stage that waits)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from fnsft.testing import TINY

HERE = os.path.dirname(os.path.abspath(__file__))
WAIT = os.path.join(HERE, "plugins", "wait_stage.py")


@pytest.mark.slow
def test_sigterm_leaves_the_summary_saying_stopped(tmp_path):
    out, marker = tmp_path / "run", tmp_path / "started"
    cfg = {"model_name_or_path": TINY, "output_dir": str(out), "plugins": [WAIT], "stages": ["wait"],
           "stage_configs": {"wait": {"marker": str(marker)}}, "report": {"enabled": False}}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen([sys.executable, "-m", "fnsft.cli", "--config", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    assert marker.exists(), proc.communicate()
    proc.send_signal(signal.SIGTERM)  # what `ray job stop` sends
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    lines = [line for line in err.splitlines() if line.startswith("fnsft:")]
    assert len(lines) == 1 and "stopped" in lines[0] and "wait" in lines[0], err
    summary = json.loads((out / "pipeline_summary.json").read_text())
    assert summary["status"] == "stopped" and summary["stopped_stage"] == "wait"
    assert summary["stages"]["wait"]["status"] == "failed"


def test_sigterm_raises_once_then_the_default_is_back():
    """Nested (before and after Ray starts): the first SIGTERM raises RunStopped; after it a
    second one would kill as usual, and a block without a stop leaves the old handler."""
    from fnsft.utils.stop import RunStopped, stop_on_sigterm

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(RunStopped, match="SIGTERM"):
        with stop_on_sigterm(), stop_on_sigterm():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises here
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    signal.signal(signal.SIGTERM, before)
    with stop_on_sigterm():
        pass
    assert signal.getsignal(signal.SIGTERM) == before
