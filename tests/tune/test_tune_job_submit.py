"""`ray job submit` of a pipeline against a running Ray head (token auth on), then its outputs.

The head is our own `ray start --head --block` on 127.0.0.1 with free ports, its own temp dir
and its own token; every `ray` command runs in a subprocess with that environment, so the test
neither sees nor disturbs the session's in-process Ray. Stopping the `--block` process stops
the head (never `ray stop`, which would stop every Ray on the machine).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess

import pytest
import yaml

from fnsft.testing import EXAMPLES
from fnsft.testing import ray_head as _shared_ray_head


def _ray(*args, env, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(["ray", *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def ray_head(tmp_path):
    """A real Ray head on 127.0.0.1 (token auth) -> (dashboard url, env for ray commands, token)."""
    with _shared_ray_head(tmp_path) as head:
        yield head


@pytest.mark.slow
def test_ray_job_submit_runs_a_pipeline_on_a_running_head(tmp_path, ray_head):
    url, env, token = ray_head

    # The job's working dir: the config and its data, referenced by relative paths.
    workdir = tmp_path / "job"
    (workdir / "data").mkdir(parents=True)
    shutil.copy(os.path.join(EXAMPLES, "sample_data.jsonl"), workdir / "data" / "train.jsonl")
    out = tmp_path / "outputs" / "job_run"  # absolute: outside the job's temporary working dir
    cache = tmp_path / "fnsft_cache"
    (workdir / "pipeline.yaml").write_text(yaml.safe_dump({
        "model_name_or_path": "builtin:tiny-llama", "output_dir": "./outputs/ignored",
        "stages": ["sft"], "resources": {"num_workers": 1}, "deepspeed": {"enabled": False},
        "stage_configs": {"sft": {"dataset_name_or_path": "data/train.jsonl", "num_train_epochs": 1,
                                  "per_device_train_batch_size": 8, "max_length": 128,
                                  "learning_rate": 3e-3, "save_steps": 0, "report_to": ["none"]}},
    }, sort_keys=False))
    # The runtime env of docs/cluster_and_jobs.md: environment for the driver and every worker.
    runtime_env = tmp_path / "runtime_env.yaml"
    runtime_env.write_text(yaml.safe_dump({"env_vars": {"FNSFT_CACHE": str(cache),
                                                        "TOKENIZERS_PARALLELISM": "false"}}))

    sid = f"fnsft-test-{secrets.token_hex(4)}"
    r = _ray("job", "submit", "--submission-id", sid, "--working-dir", str(workdir),
             "--runtime-env", str(runtime_env), "--",
             "fnsft-pipeline", "--config", "pipeline.yaml", "--output_dir", str(out),
             env=env, timeout=900)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert f"Job '{sid}' succeeded" in r.stdout + r.stderr

    status = _ray("job", "status", sid, env=env)
    assert status.returncode == 0 and f"Job '{sid}' succeeded" in status.stdout + status.stderr
    logs = _ray("job", "logs", sid, env=env)
    assert logs.returncode == 0
    assert "Pipeline finished" in logs.stdout and str(out) in logs.stdout

    # Outputs: where --output_dir said, with the summary, the log and the model.
    summary = json.loads((out / "pipeline_summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["stages"]["sft"]["status"] == "completed"
    assert summary["stages"]["sft"]["metrics"]["train_rows"] > 0
    assert (out / "01_sft" / "model" / "config.json").is_file()
    assert "Stage sft completed" in (out / "pipeline_training.log").read_text()
    assert any(cache.iterdir())  # the runtime env's FNSFT_CACHE reached the job

    # Token auth is on: without the cluster's token the jobs API refuses.
    wrong = _ray("job", "list", env={**env, "RAY_AUTH_TOKEN": secrets.token_hex(32)})
    assert wrong.returncode != 0
    assert "403" in wrong.stdout + wrong.stderr or "nauthorized" in wrong.stdout + wrong.stderr \
        or "orbidden" in wrong.stdout + wrong.stderr
