"""The simulated cluster and local S3 server of the cluster tests (loaded by conftest.py)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


class SimCluster:
    """The cluster a test drives: ``address``, ``add_worker()``, ``remove(node_id)``, ``env``."""

    def __init__(self, env: dict | None = None):
        from ray.cluster_utils import Cluster

        self.temp_dir = tempfile.mkdtemp(prefix="fnc", dir="/tmp")  # short: Ray's sockets live in it
        self.env = {"TOKENIZERS_PARALLELISM": "false", "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
        with node_env(self.env):
            self.cluster = Cluster(initialize_head=True, head_node_args={
                "num_cpus": 0, "include_dashboard": False, "temp_dir": self.temp_dir})
        self.address = self.cluster.address

    def add_worker(self, num_cpus: int = 1):
        with node_env(self.env):
            node = self.cluster.add_node(num_cpus=num_cpus)
        self.cluster.wait_for_nodes()
        return node

    def node(self, node_id: str):
        return next(n for n in self.cluster.worker_nodes if n.node_id == node_id)

    def remove(self, node_id: str) -> None:
        """Lose a worker node at once (its processes SIGKILLed, as when a machine dies)."""
        self.cluster.remove_node(self.node(node_id), allow_graceful=False)

    def shutdown(self) -> None:
        self.cluster.shutdown()
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    @staticmethod
    def node_of(stage_dir: str, rank: int = 0):
        """The node id Train worker ``rank`` of a stage recorded (``.worker<rank>.node``), or None yet."""
        try:
            return open(os.path.join(stage_dir, f".worker{rank}.node")).read().strip() or None
        except OSError:
            return None

    def second_worker_node(self, stage_dir: str):
        """Worker 1's node, once both workers of a 2-worker SPREAD stage recorded theirs (distinct)."""
        lost = self.node_of(stage_dir, 1)
        if lost:
            assert len({self.node_of(stage_dir, 0), lost}) == 2, "SPREAD placed both workers on one node"
        return lost

    def run_losing_a_node(self, cfg: dict, tmp_path, stage: str, pick, timeout_s: float = 900,
                          finish_s: float = 1200) -> tuple[str, str]:
        """Run ``cfg`` in its own driver process (as ``fnsft-pipeline``); once ``stage`` has a
        registered checkpoint and ``pick(stage_dir)`` names a node, lose that node and add a fresh
        one, as an autoscaler would. Returns (the lost node id, the driver's log); the run must exit 0."""
        import yaml

        from fnsft.testing import REPO, registered_checkpoints, start_pipeline

        out = str(cfg["output_dir"])
        path = tmp_path / "run.yaml"
        path.write_text(yaml.safe_dump(cfg))
        log = tmp_path / "driver.log"
        proc = start_pipeline(path, log, {"PYTHONPATH": REPO, "RAY_ADDRESS": ""})
        stage_dir = os.path.join(out, f"01_{stage}")
        lost = None
        try:
            deadline = time.time() + timeout_s
            while time.time() < deadline and proc.poll() is None:
                if registered_checkpoints(os.path.join(out, "ray_train"), stage):
                    lost = pick(stage_dir)
                    if lost:
                        self.remove(lost)
                        self.add_worker()
                        break
                time.sleep(0.2)
            assert lost, f"no checkpoint before the run ended:\n{log.read_text()[-4000:]}"
            rc = proc.wait(timeout=finish_s)
        finally:
            if proc.poll() is None:
                proc.kill()
        text = log.read_text()
        assert rc == 0, text[-6000:]
        return lost, text


@contextlib.contextmanager
def node_env(env: dict):
    """``os.environ`` with ``env`` while nodes are started (they inherit it), then as it was."""
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


CREDENTIALS = {"AWS_ACCESS_KEY_ID": "fnsft-test", "AWS_SECRET_ACCESS_KEY": "fnsft-test-secret",
               "AWS_DEFAULT_REGION": "us-east-1",
               # never ask a cloud metadata service (an address off this machine) for credentials
               "AWS_EC2_METADATA_DISABLED": "true"}


class LocalS3:
    """``moto_server`` on a free loopback port; ``env`` is what a node needs to reach it."""

    def __init__(self, log_path: str):
        exe = shutil.which("moto_server")
        if exe is None:
            raise RuntimeError("moto_server not found: pip install 'moto[server]' (scripts/setup.sh --tests)")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(self.port)], stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.endpoint, timeout=2)
                break
            except OSError:
                time.sleep(0.3)
        else:
            raise RuntimeError(f"moto_server did not start: {open(log_path).read()[-2000:]}")
        self.env = {"AWS_ENDPOINT_URL": self.endpoint, **CREDENTIALS}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, **{
            "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            "region_name": CREDENTIALS["AWS_DEFAULT_REGION"]})

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        out, token = [], None
        while True:
            kw = {"Bucket": bucket, "Prefix": prefix, **({"ContinuationToken": token} if token else {})}
            page = self.client().list_objects_v2(**kw)
            out += [o["Key"] for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return out
            token = page["NextContinuationToken"]

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def without_aws(env: dict) -> dict:
    """``env`` less every AWS variable: the driver's environment in these tests."""
    return {k: v for k, v in env.items() if not k.startswith("AWS_")}


class FakeAutoscalingCluster:
    """A head running Ray's autoscaler with the fake multi-node provider (``cluster/fake_multinode.yaml``):
    no worker nodes at start; demand brings them up as local raylets, idle ones go.

    ``ray.cluster_utils.AutoscalingCluster`` does the same but runs ``ray stop --force`` (every Ray
    on the machine); this starts the head as it does, without that: ``ray start --head --block``
    on 127.0.0.1 with free ports and its own temp dir, which the autoscaler's nodes share (they
    take the head's). ``close()`` stops the ``--block`` process and kills whatever still runs
    from that temp dir, the worker nodes included.
    """

    def __init__(self, yaml_path: str, log_dir: str, env: dict | None = None):
        import yaml

        from fnsft.testing import _free_ports

        self.temp_dir = tempfile.mkdtemp(prefix="fna", dir="/tmp")  # short: Ray's sockets live in it
        flags = ("--port", "--ray-client-server-port", "--dashboard-agent-listen-port",
                 "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port",
                 "--node-manager-port", "--object-manager-port")
        ports = dict(zip(flags, _free_ports(len(flags))))
        self.address = f"127.0.0.1:{ports['--port']}"
        with open(yaml_path) as f:
            self.config = yaml.safe_load(f)
        self.config["provider"]["gcs_address"] = self.address  # the nodes join this head
        # Where the driver finds the autoscaler's limits (as `ray up` leaves the YAML on the head).
        self.config_path = config_path = os.path.join(self.temp_dir, "autoscaling.yaml")
        with open(config_path, "w") as f:
            yaml.safe_dump(self.config, f)
        head = self.config["available_node_types"][self.config["head_node_type"]]["resources"]
        # Token auth as a real cluster has it, with a token of its own: the autoscaler's nodes
        # inherit it from the head's environment; ``env`` is also what a client here needs.
        self.env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
        self.env.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32),
                         "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1",
                         "TOKENIZERS_PARALLELISM": "false", "RAY_USAGE_STATS_ENABLED": "0", **(env or {})})
        cmd = ["ray", "start", "--head", "--block", "--node-ip-address=127.0.0.1", "--include-dashboard=false",
               f"--num-cpus={int(head.get('CPU', 0))}", "--num-gpus=0", f"--temp-dir={self.temp_dir}",
               f"--autoscaling-config={config_path}", "--disable-usage-stats"]
        cmd += [f"{flag}={port}" for flag, port in ports.items()]
        self.log_path = os.path.join(str(log_dir), "ray_fake_head.log")
        with open(self.log_path, "w") as log:
            self.head = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        try:
            self._wait_up()
        except BaseException:
            self.close()
            raise

    def _wait_up(self, timeout: float = 300) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.head.poll() is not None:
                raise RuntimeError(f"ray start exited with {self.head.returncode}:\n{self._log()}")
            if self.status() is not None:
                return
            time.sleep(1)
        raise RuntimeError(f"the fake autoscaling head did not come up:\n{self._log()}")

    def _log(self) -> str:
        with open(self.log_path) as f:
            return f.read()[-3000:]

    def status(self) -> str | None:
        """``ray status`` of this head, or None before the autoscaler's first report."""
        try:
            out = subprocess.run(["ray", "status", f"--address={self.address}"], env=self.env,
                                 capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:  # a loaded machine: the head is not answering yet
            return None
        if out.returncode != 0 or "Node status" not in out.stdout:
            return None
        return out.stdout

    def worker_nodes(self) -> list[dict]:
        """Alive nodes other than the head: ``{"node_id", "cpus", "ip", "head": False}`` each."""
        import json

        # The autoscaler's events also go to a driver's stdout: the answer is the marked line.
        code = ("import json, ray; ray.init(address=%r, logging_level='ERROR', log_to_driver=False);"
                "print('NODES=' + json.dumps([{'node_id': n['NodeID'], 'cpus': n['Resources'].get('CPU', 0),"
                " 'ip': n['NodeManagerAddress'], 'head': 'node:__internal_head__' in n['Resources']}"
                " for n in ray.nodes() if n['Alive']]))") % self.address
        out = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True,
                             timeout=120)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-2000:])
        line = next(ln for ln in out.stdout.splitlines() if ln.startswith("NODES="))
        return [n for n in json.loads(line[len("NODES="):]) if not n["head"]]

    def close(self) -> list[str]:
        """Stop the head and its nodes; returns the pids that had to be killed by temp dir."""
        import signal

        from fnsft.testing import _processes_using

        self.head.send_signal(signal.SIGTERM)  # `ray start --block` stops what it started
        try:
            self.head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.head.pid, signal.SIGKILL)  # the process group created above
            self.head.wait(timeout=30)
        leftovers = _processes_using(self.temp_dir, wait_s=30)
        for pid in leftovers:  # the autoscaler's worker nodes (only they and the head use this dir)
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        return leftovers

    def still_running(self) -> list[str]:
        """Pids of processes still using this cluster's temp dir (none after ``close()``)."""
        return subprocess.run(["pgrep", "-f", self.temp_dir], capture_output=True, text=True).stdout.split()
