"""Checkpoints on S3-compatible storage, reached only from the nodes' environment.

A real cluster's nodes carry the storage endpoint and credentials (instance roles, env); the
driver's shell need not. The S3 server (moto_server) listens on 127.0.0.1; only the simulated
cluster's nodes are given ``AWS_ENDPOINT_URL`` and credentials.
"""

from __future__ import annotations

import json
import os

import pytest
import yaml

from fnsft.testing import REPO, start_pipeline, tiny_sft_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def _config(tmp_path, cluster, storage: str, **sft) -> str:
    # STRICT_SPREAD: one worker per node or none (the two 1-CPU nodes fit it exactly)
    cfg = tiny_sft_config(tmp_path / "out", eval_split=0.0, per_device_train_batch_size=4, **sft)
    cfg["resources"] = {"num_workers": 2, "cpus_per_worker": 1, "placement_strategy": "STRICT_SPREAD"}
    cfg["ray"] = {"address": cluster.address, "storage_path": storage}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_checkpoints_go_to_s3_from_the_nodes_env(tmp_path, s3, s3_cluster):
    s3.client().create_bucket(Bucket="ckpt")
    assert not {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID"} & set(os.environ)  # the driver gets none of it
    path = _config(tmp_path, s3_cluster, "s3://ckpt/runs", max_steps=20, save_steps=10)
    proc = start_pipeline(path, tmp_path / "driver.log", {"PYTHONPATH": REPO, "RAY_ADDRESS": ""})
    proc.wait(timeout=900)
    text = (tmp_path / "driver.log").read_text()
    assert proc.returncode == 0, text[-6000:]
    out = tmp_path / "out"
    summary = json.loads((out / "pipeline_summary.json").read_text())
    metrics = summary["stages"]["sft"]["metrics"]
    assert metrics["global_step"] == 20
    workers = metrics["placement"]["workers"]
    assert len({w["node_id"] for w in workers}) == 2, workers  # STRICT_SPREAD: a node each
    keys = s3.keys("ckpt", "runs/")
    assert any("/checkpoint-000010/" in k for k in keys), keys[:20]
    assert not os.path.exists(out / "ray_train"), "checkpoints went to the driver's disk"


def _fails_before_any_stage(tmp_path, cluster, storage: str) -> str:
    path = _config(tmp_path, cluster, storage, max_steps=4)
    proc = start_pipeline(path, tmp_path / "driver.log", {"PYTHONPATH": REPO, "RAY_ADDRESS": ""})
    proc.wait(timeout=300)
    text = (tmp_path / "driver.log").read_text()
    assert proc.returncode == 2, text[-4000:]
    errors = [line for line in text.splitlines() if line.startswith("fnsft: error:")]
    assert len(errors) == 1 and "Traceback" not in text, text[-4000:]
    assert not (tmp_path / "out" / "01_sft").exists()  # no stage started
    return errors[0]


def test_a_missing_bucket_is_one_line_before_any_stage(tmp_path, s3, s3_cluster):
    line = _fails_before_any_stage(tmp_path, s3_cluster, "s3://no-such-bucket/runs")
    assert "ray.storage_path: node" in line and "s3://no-such-bucket/runs" in line and "bucket exists" in line


def test_an_unreachable_endpoint_is_one_line_before_any_stage(tmp_path, sim_cluster_env):
    with __import__("socket").socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    cluster = sim_cluster_env({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{dead}", "AWS_ACCESS_KEY_ID": "x",
                               "AWS_SECRET_ACCESS_KEY": "y", "AWS_DEFAULT_REGION": "us-east-1",
                               "AWS_EC2_METADATA_DISABLED": "true"})
    line = _fails_before_any_stage(tmp_path, cluster, "s3://ckpt/runs")
    assert "ray.storage_path" in line and "s3://ckpt/runs" in line
