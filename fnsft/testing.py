"""Helpers for fnsft's tests (and for users testing their own stages): tiny configs, CLI runs."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(REPO, "examples")
TINY = "builtin:tiny-llama"


def tiny_sft_config(output_dir, **sft) -> dict:
    """A small, fast SFT pipeline config on the tiny model (2 workers, ZeRO-2)."""
    stage = {
        "dataset_name_or_path": os.path.join(EXAMPLES, "sample_data.jsonl"),
        "num_train_epochs": 2, "learning_rate": 3e-3, "per_device_train_batch_size": 8,
        "max_length": 128, "save_steps": 0, "report_to": ["none"], "eval_split": 0.1,
    }
    stage.update(sft)
    return {
        "model_name_or_path": TINY, "output_dir": str(output_dir), "stages": ["sft"],
        "resources": {"num_workers": 2}, "deepspeed": {"zero_stage": 2},
        "stage_configs": {"sft": stage},
    }


def run_cli(*args, cwd=None, env=None, timeout=120) -> subprocess.CompletedProcess:
    """Run ``fnsft.cli`` in a fresh interpreter; prints RAY_IMPORTED=<bool> after it returns."""
    code = (
        "import sys\n"
        "from fnsft.cli import pipeline_main, train_main\n"
        f"fn = train_main if {args[:1]!r} == ('train',) else pipeline_main\n"
        f"argv = {list(args[1:]) if args[:1] == ('train',) else list(args)!r}\n"
        "rc = fn(argv)\n"
        "print('RAY_IMPORTED=' + str('ray' in sys.modules))\n"
        "sys.exit(rc)\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def tiny_rl_run(output_dir, algorithm: str, top: dict | None = None, **rl) -> tuple[dict, list[dict], dict]:
    """One RL stage on the tiny model learning the share of {t, h, e} characters in its answers
    (dense; a random policy scores ≈0.16), 20 iterations; ``rl``: stage keys, ``top``: top-level.
    Returns (the stage's metrics, its ``rl_history``, the stage's summary entry)."""
    import json

    from fnsft.pipeline.driver import Pipeline

    stage = {
        "dataset_name_or_path": os.path.join(EXAMPLES, "arithmetic", "train.jsonl"), "algorithm": algorithm,
        "num_iterations": 20, "prompts_per_iteration": 8, "num_generations": 4, "max_new_tokens": 10,
        "learning_rate": 3e-3, "kl_coef": 0.01, "rewards": [{"type": "target_chars", "chars": "the"}],
        "report_to": ["none"], "save_intermediate": False, "verify_weight_sync": True, "logging_steps": 100,
        "generation": {"num_cpus": 1}, "reward": {"num_cpus": 0.25}, "reference": {"num_cpus": 0.5},
    }
    stage.update(rl)
    cfg = {"model_name_or_path": TINY, "output_dir": str(output_dir), "stages": ["rl"],
           "resources": {"num_workers": 1}, "deepspeed": {"zero_stage": 2}, "stage_configs": {"rl": stage}}
    cfg.update(top or {})
    out = Pipeline.from_dict(cfg).run()["stages"]["rl"]
    with open(out["artifacts"]["rl_history"]) as f:
        return out["metrics"], json.load(f), out


def version_after_restart(actor, timeout_s: float = 120):
    """A restarted role actor's ``weights_version()``: ``ray.kill`` returns before the process is
    gone, so the old process may still answer and a call may land in the restart window
    (ActorUnavailableError); ask until the new process answers or ``timeout_s`` passes."""
    import time

    import ray

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            version = ray.get(actor.weights_version.remote())
            if version["restarted"] or time.monotonic() > deadline:
                return version
        except ray.exceptions.ActorUnavailableError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def run_cli_each(argvs: list[list[str]], cwd=None, timeout=300) -> list[dict]:
    """Run ``fnsft-pipeline`` once per argv in one fresh interpreter (one start-up for many light
    runs such as ``--dry_run``); each run's ``rc``, ``stdout``, ``stderr`` and ``ray_imported``."""
    import json

    code = (
        "import contextlib, io, json, sys\n"
        "from fnsft.cli import pipeline_main\n"
        "results = []\n"
        f"for argv in {argvs!r}:\n"
        "    out, err = io.StringIO(), io.StringIO()\n"
        "    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):\n"
        "        try:\n"
        "            rc = pipeline_main(argv)\n"
        "        except SystemExit as e:\n"
        "            rc = e.code\n"
        "    results.append({'rc': rc, 'stdout': out.getvalue(), 'stderr': err.getvalue(),\n"
        "                    'ray_imported': 'ray' in sys.modules})\n"
        "print('FNSFT_RESULTS=' + json.dumps(results))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                          env=dict(os.environ), timeout=timeout)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("FNSFT_RESULTS=")]
    assert line, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(line[-1][len("FNSFT_RESULTS="):])


def registered_checkpoints(storage_dir: str, run_prefix: str) -> list[str]:
    """Checkpoint directory names Ray Train's controller has registered for runs ``<run_prefix>-*``.

    A worker's ``ray.train.report`` returns before the controller has collected it; a worker
    killed in between loses that checkpoint. Tests that kill workers wait for this list instead
    of for directories to appear on storage.
    """
    import glob
    import json

    names: list[str] = []
    for path in glob.glob(os.path.join(storage_dir, f"{run_prefix}-*", "checkpoint_manager_snapshot.json")):
        try:
            with open(path) as f:
                names += [c["checkpoint_dir_name"] for c in json.load(f)["checkpoint_results"]]
        except (OSError, ValueError, KeyError):  # being written
            continue
    return names


class KillAfterCheckpoint:
    """``with KillAfterCheckpoint(out, "01_sft", "sft", rank=1) as k: run()`` — SIGKILLs that
    Train worker once Ray Train has registered a checkpoint of the stage; ``k.pid`` says whom."""

    def __init__(self, output_dir, stage_dir: str, run_prefix: str, rank: int = 0, timeout_s: float = 300):
        import threading

        self.output_dir, self.stage_dir, self.run_prefix = str(output_dir), stage_dir, run_prefix
        self.rank, self.timeout_s = rank, timeout_s
        self.pid = None
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        import signal
        import time

        from fnsft.workers.hand_back import find_pids

        deadline = time.time() + self.timeout_s
        while time.time() < deadline:
            if registered_checkpoints(os.path.join(self.output_dir, "ray_train"), self.run_prefix):
                pid = find_pids(os.path.join(self.output_dir, self.stage_dir)).get(self.rank)
                if pid:
                    os.kill(pid, signal.SIGKILL)
                    self.pid = pid
                    return
            time.sleep(0.2)

    def __enter__(self) -> "KillAfterCheckpoint":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.thread.join(timeout=1)


def start_pipeline(config_path: str, log_path: str, env: dict | None = None, *args: str):
    """``fnsft-pipeline --config <config_path>`` in its own process group, output to ``log_path``."""
    with open(log_path, "w") as log:
        return subprocess.Popen([sys.executable, "-m", "fnsft.cli", "--config", str(config_path), *args],
                                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                start_new_session=True)


def kill_driver_after_checkpoint(proc, output_dir, run_prefix: str, timeout_s: float = 600) -> list[str]:
    """SIGKILL the driver ``proc`` once Ray Train has registered a checkpoint of the run
    ``<run_prefix>-*`` under ``<output_dir>/ray_train``; returns the registered checkpoints.

    A local Ray shares the driver's fate: its processes (named by the driver's pid in their
    session folder) go with it; any still there after 60 s are killed too, so the rerun starts
    on a quiet machine.
    """
    import signal
    import time

    storage = os.path.join(str(output_dir), "ray_train")
    deadline = time.time() + timeout_s
    while time.time() < deadline and proc.poll() is None:
        names = registered_checkpoints(storage, run_prefix)
        if names:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
            _reap_session(proc.pid)
            return names
        time.sleep(0.5)
    raise AssertionError(f"no checkpoint of {run_prefix} registered before the driver ended "
                         f"(exit code {proc.poll()})")


def _reap_session(driver_pid: int, wait_s: float = 60) -> None:
    import signal
    import time

    pattern = f"session_[0-9_-]*_{driver_pid}/"
    deadline = time.time() + wait_s
    while True:
        pids = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
        if not pids:
            return
        if time.time() > deadline:
            for pid in pids:  # the killed driver's own Ray processes, nobody else's
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except OSError:
                    pass
            return
        time.sleep(1)


@contextlib.contextmanager
def ray_head(log_dir, num_cpus: int = 2):
    """A real Ray head on 127.0.0.1 (token auth, free ports, its own temp dir and token) for
    ``ray job submit`` tests -> ``(dashboard url, env for ray commands, token)``.

    Every ``ray`` command runs in a subprocess with that env, so a test's in-process Ray is
    neither seen nor disturbed. Stopping the ``--block`` process stops the head (never
    ``ray stop``, which would stop every Ray on the machine); what it leaves is killed by its
    temp dir, which only it uses.
    """
    import secrets
    import shutil
    import signal
    import tempfile

    ports = dict(zip(_HEAD_PORT_FLAGS, _free_ports(len(_HEAD_PORT_FLAGS))))
    temp_dir = tempfile.mkdtemp(prefix="fnj", dir="/tmp")  # short: Ray's sockets live in it
    token = secrets.token_hex(32)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, RAY_TMPDIR=temp_dir,
               TOKENIZERS_PARALLELISM="false", RAY_USAGE_STATS_ENABLED="0")
    log_path = os.path.join(str(log_dir), "ray_head.log")
    cmd = ["ray", "start", "--head", "--block", "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
           "--include-dashboard=true", f"--num-cpus={num_cpus}", "--num-gpus=0", f"--temp-dir={temp_dir}",
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


_HEAD_PORT_FLAGS = ("--port", "--dashboard-port", "--ray-client-server-port", "--dashboard-agent-listen-port",
                    "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port",
                    "--node-manager-port", "--object-manager-port")


def _free_ports(n: int) -> list[int]:
    import socket

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


def _wait_for_dashboard(url: str, token: str, head, log_path: str, timeout=120) -> None:
    import time
    import urllib.request

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
    import time

    deadline = time.time() + wait_s
    while True:
        pids = subprocess.run(["pgrep", "-f", path], capture_output=True, text=True).stdout.split()
        if not pids or time.time() > deadline:
            return pids
        time.sleep(1)
