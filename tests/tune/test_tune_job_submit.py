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
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest
import yaml

from fnsft.testing import EXAMPLES

PORT_FLAGS = ("--port", "--dashboard-port", "--ray-client-server-port", "--dashboard-agent-listen-port",
              "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port",
              "--node-manager-port", "--object-manager-port")


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _ray(*args, env, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(["ray", *args], env=env, capture_output=True, text=True, timeout=timeout)


def _wait_for_dashboard(url: str, token: str, head: subprocess.Popen, log_path: str, timeout=120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if head.poll() is not None:
            raise AssertionError(f"ray start exited with {head.returncode}:\n{open(log_path).read()[-3000:]}")
        try:
            req = urllib.request.Request(f"{url}/api/version", headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(req, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError(f"the dashboard at {url} did not come up:\n{open(log_path).read()[-3000:]}")


def _processes_using(path: str, wait_s: float) -> list[str]:
    deadline = time.time() + wait_s
    while True:
        pids = subprocess.run(["pgrep", "-f", path], capture_output=True, text=True).stdout.split()
        if not pids or time.time() > deadline:
            return pids
        time.sleep(1)


@pytest.fixture
def ray_head(tmp_path):
    """A real Ray head on 127.0.0.1 (token auth) -> (dashboard url, env for ray commands)."""
    ports = dict(zip(PORT_FLAGS, _free_ports(len(PORT_FLAGS))))
    temp_dir = tempfile.mkdtemp(prefix="fnj", dir="/tmp")  # short: Ray's sockets live in it
    token = secrets.token_hex(32)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, RAY_TMPDIR=temp_dir,
               TOKENIZERS_PARALLELISM="false", RAY_USAGE_STATS_ENABLED="0")
    log_path = str(tmp_path / "ray_head.log")
    cmd = ["ray", "start", "--head", "--block", "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
           "--include-dashboard=true", "--num-cpus=2", "--num-gpus=0", f"--temp-dir={temp_dir}",
           "--disable-usage-stats"] + [f"{flag}={port}" for flag, port in ports.items()]
    with open(log_path, "w") as log:
        head = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{ports['--dashboard-port']}"
    try:
        _wait_for_dashboard(url, token, head, log_path)
        yield url, {**env, "RAY_ADDRESS": url}, token
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops what it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)  # the process group we created above
            head.wait(timeout=30)
        leftovers = _processes_using(temp_dir, wait_s=30)
        for pid in leftovers:  # what the head left behind (only it uses this temp dir)
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not leftovers, f"Ray processes of the test head still running: {leftovers}"


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
