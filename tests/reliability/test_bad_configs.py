"""Every config in ``bad_configs/`` fails before Ray starts: one line naming the key or file and
what would be accepted, exit code 2, no traceback — in ``--dry_run`` and in a real run.

Each YAML's header says what it expects: ``# expect: <fragment of the error line>`` and, when a
command-line flag is part of the mistake, ``# args: <flags>``. ``{examples}``, ``{tmp}``,
``{corpus}`` (this folder's ``bad_configs/``) and ``{no_template_model}`` (the tiny model saved
without a chat template) are filled in here.
The real run uses ``python -X importtime``: its import log proves ``ray`` was never imported.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest

from fnsft.testing import EXAMPLES, REPO

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = sorted(glob.glob(os.path.join(HERE, "bad_configs", "*.yaml")))


def _header(text: str, key: str) -> str:
    for line in text.splitlines():
        if line.startswith(f"# {key}:"):
            return line.split(":", 1)[1].strip()
    return ""


def _materialize(path: str, tmp_path, model: str) -> tuple[str, str, list[str]]:
    subst = {"{examples}": EXAMPLES, "{tmp}": str(tmp_path), "{no_template_model}": model,
             "{corpus}": os.path.join(HERE, "bad_configs")}
    text = open(path).read()
    for k, v in subst.items():
        text = text.replace(k, v)
    cfg = tmp_path / os.path.basename(path)
    cfg.write_text(text)
    return str(cfg), _header(text, "expect"), _header(text, "args").split()


def _start(argv: list[str], importtime: bool = False) -> subprocess.Popen:
    flags = ["-X", "importtime"] if importtime else []
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, *flags, "-m", "fnsft.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)


def _wait(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _one_line(result, expect: str) -> list[str]:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr[-2000:])
    lines = [ln for ln in result.stderr.splitlines() if ln.strip() and not ln.startswith("import time:")]
    assert len(lines) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("fnsft: error: ") and expect in lines[0], (expect, lines[0])
    return lines


def test_corpus_is_there():
    assert len(CORPUS) >= 43
    assert all(_header(open(p).read(), "expect") for p in CORPUS)


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: os.path.basename(p)[:-5])
def test_bad_config_fails_before_ray(path, tmp_path, no_template_model):
    cfg, expect, args = _materialize(path, tmp_path, no_template_model)
    dry, real = _start(["--config", cfg, "--dry_run", *args]), _start(["--config", cfg, *args], importtime=True)
    dry, real = _wait(dry), _wait(real)  # both at once: the pair takes the time of one
    assert _one_line(real, expect) == _one_line(dry, expect)
    imported = {ln.rsplit("|", 1)[-1].strip().split(".")[0] for ln in real.stderr.splitlines()
                if ln.startswith("import time:")}
    assert "fnsft" in imported and "ray" not in imported and "torch" not in imported
    assert not os.path.exists(tmp_path / "out")  # nothing written


def test_accepted_names_match_transformers():
    """The copies in fnsft.config.checks (validation must not import transformers) are current."""
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    from fnsft.config.checks import OPTIMIZERS, SCHEDULERS

    assert set(OPTIMIZERS) == {o.value for o in OptimizerNames}
    assert set(SCHEDULERS) == {s.value for s in SchedulerType}
