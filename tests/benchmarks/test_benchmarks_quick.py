"""The throughput benchmarks run end to end (``--quick``: the tiny model, one round), so the
scripts cannot rot. Speed itself is never asserted here (benchmarks/results hold the figures)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fnsft.testing import REPO


@pytest.mark.slow
@pytest.mark.parametrize("script,only", [
    ("sft_throughput", ("equal", "zero2")), ("dpo_throughput", ("equal",)),
    pytest.param("sft_throughput", ("defaults",), marks=pytest.mark.long),
    pytest.param("dpo_throughput", ("defaults", "zero2"), marks=pytest.mark.long)])
def test_benchmark_quick_runs_every_comparison(tmp_path, script, only):
    """Each script's sides run in CI (SFT: equal settings and 2 workers vs 1; DPO: equal settings);
    the rest of the comparisons (each tool's defaults) with FNSFT_LONG_TESTS=1."""
    env = {**os.environ, "FNSFT_BENCHMARK_RESULTS": str(tmp_path), "PYTHONPATH": REPO}
    proc = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", f"{script}.py"), "--quick",
                           "--rounds", "1", "--only", *only], cwd=str(tmp_path), env=env, capture_output=True,
                          text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.load(open(tmp_path / f"{script}_quick.json"))
    comparisons = {"equal": ("fnsft", "trl"), "defaults": ("fnsft", "trl"),
                   "zero2": ("fnsft_2_workers_zero2", "fnsft_1_worker")}
    for name in only:
        sides = comparisons[name]
        for side in sides:
            assert result[name][side]["useful_tokens_per_s"] > 0, (name, side)
            assert len(result[name][side]["runs"]) == 1
        assert result[name][f"ratio_{sides[0]}_over_{sides[1]}"] > 0
    assert result["machine"]["cpus"] and result["settings"]["quick"] is True


@pytest.mark.slow
@pytest.mark.long
def test_dtype_benchmark_quick_runs_both_dtypes(tmp_path):
    env = {**os.environ, "FNSFT_BENCHMARK_RESULTS": str(tmp_path), "PYTHONPATH": REPO}
    proc = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "sft_dtype.py"), "--quick", "--rounds", "1"],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.load(open(tmp_path / "sft_dtype_quick.json"))
    assert set(result["runs"]) == {"float32", "bfloat16"}
    assert all(r[0]["useful_tokens_per_s"] > 0 for r in result["runs"].values())
    assert result["ratio_bfloat16_over_float32"] > 0
