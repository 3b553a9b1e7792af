"""cluster/*.yaml: valid for Ray's cluster launcher (the JSON schema shipped inside ``ray``)."""

from __future__ import annotations

import copy
import glob
import json
import os

import jsonschema
import pytest
import ray.autoscaler
import yaml

from fnsft.testing import REPO

CLUSTER = os.path.join(REPO, "cluster")
YAMLS = sorted(glob.glob(os.path.join(CLUSTER, "*.yaml")))
FAKE = os.path.join(CLUSTER, "fake_multinode.yaml")  # for tests: `ray start --autoscaling-config` only
LAUNCHED = [p for p in YAMLS if p != FAKE]  # what `ray up` launches
SCHEMA_PATH = os.path.join(os.path.dirname(ray.autoscaler.__file__), "ray-schema.json")


def _schema():
    with open(SCHEMA_PATH) as f:
        return json.load(f)


def _load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def test_the_three_providers_are_shipped():
    names = {os.path.basename(p) for p in YAMLS}
    assert {"aws.yaml", "gcp.yaml", "local.yaml"} <= names
    assert os.path.isfile(os.path.join(CLUSTER, "README.md"))


@pytest.mark.parametrize("path", YAMLS, ids=os.path.basename)
def test_cluster_yaml_passes_rays_schema(path):
    config = _load(path)
    jsonschema.validate(config, _schema())


@pytest.mark.parametrize("path", LAUNCHED, ids=os.path.basename)
def test_cluster_yaml_passes_rays_own_launcher_checks(path):
    """What `ray up` does before it talks to a cloud: fill defaults, then validate."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(_load(path)))


@pytest.mark.parametrize("path", LAUNCHED, ids=os.path.basename)
def test_cluster_yaml_has_a_cpu_head_gpu_workers_and_installs_fnsft(path):
    config = _load(path)
    text = open(path).read()
    assert "pip install -e ~/fnsft" in " ".join(config["setup_commands"])
    assert "RAY_AUTH_MODE=token" in " ".join(config["head_start_ray_commands"])
    assert "RAY_AUTH_MODE=token" in " ".join(config["worker_start_ray_commands"])
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert "ray job submit" in text  # the header says how to use it
    if config["provider"]["type"] == "local":
        # Ray's on-prem provider has one node type: GPU machines are the worker ips, and
        # the head gives Ray no GPUs.
        assert "available_node_types" not in config
        assert config["max_workers"] <= len(config["provider"]["worker_ips"])
        assert "--num-gpus=0" in " ".join(config["head_start_ray_commands"])
        return
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and head["resources"]["CPU"] > 0
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert workers and all(t["resources"]["GPU"] >= 1 for t in workers)
    assert all(0 <= t["min_workers"] <= t["max_workers"] for t in workers)
    assert sum(t["min_workers"] for t in workers) <= config["max_workers"]


def _broken(path, change):
    config = copy.deepcopy(_load(path))
    change(config)
    return config


def _aws():
    return os.path.join(CLUSTER, "aws.yaml")


BREAKAGES = {
    "unknown top-level key": lambda c: c.update(max_worker=4),
    "min_workers not an integer": lambda c: c["available_node_types"]["gpu.1x"].update(min_workers="two"),
    "negative GPU count": lambda c: c["available_node_types"]["gpu.1x"]["resources"].update(GPU=-1),
    "node type without node_config": lambda c: c["available_node_types"]["gpu.4x"].pop("node_config"),
    "unknown node-type key": lambda c: c["available_node_types"]["gpu.1x"].update(gpus=1),
    "provider without type": lambda c: c["provider"].pop("type"),
    "setup_commands not a list": lambda c: c.update(setup_commands="pip install -e ~/fnsft"),
}


@pytest.mark.parametrize("name", sorted(BREAKAGES))
def test_a_broken_cluster_yaml_fails_the_schema(name):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_broken(_aws(), BREAKAGES[name]), _schema())


def test_a_broken_cluster_yaml_file_fails(tmp_path):
    """The same check on a file, as a user's edited copy would be read."""
    text = open(_aws()).read().replace("    min_workers: 0\n    max_workers: 4", "    min_workers: 0\n    max_workers: four", 1)
    assert "max_workers: four" in text
    path = tmp_path / "aws_broken.yaml"
    path.write_text(text)
    with pytest.raises(jsonschema.ValidationError, match="'four' is not of type 'integer'"):
        jsonschema.validate(_load(path), _schema())


def test_local_provider_rejects_node_types():
    """Why cluster/local.yaml has no available_node_types: Ray's on-prem launcher refuses them."""
    from ray.autoscaler._private.util import prepare_config

    config = _load(os.path.join(CLUSTER, "local.yaml"))
    config["available_node_types"] = {"gpu": {"resources": {"GPU": 1}, "node_config": {}}}
    config["head_node_type"] = "gpu"
    jsonschema.validate(config, _schema())  # the schema alone does not catch it ...
    with pytest.raises(Exception, match="available_node_types is not supported"):  # ... `ray up` does
        prepare_config(config)


def test_fake_cluster_yaml_mirrors_aws_node_types_with_small_cpu_nodes():
    """cluster/fake_multinode.yaml: what the autoscaler reads (its defaults file is not shipped
    in Ray's wheel, so the launcher's `prepare_config` cannot run; `validate_config` can)."""
    from ray.autoscaler._private.util import validate_config

    config, aws = _load(FAKE), _load(_aws())
    validate_config(config)
    assert config["provider"]["type"] == "fake_multinode"
    assert config["provider"]["disable_node_updaters"] and config["provider"]["use_node_id_as_ip"]
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"] == {"CPU": 0} and head["max_workers"] == 0  # trains nothing
    workers = {n: t for n, t in types.items() if n != config["head_node_type"]}
    assert len(workers) == len(aws["available_node_types"]) - 1
    assert all(t["resources"].get("GPU", 0) == 0 and 1 <= t["resources"]["CPU"] <= 2 for t in workers.values())
    assert all(t["min_workers"] == 0 for t in workers.values())  # no worker nodes at start
    assert config["max_workers"] <= 4 and config["idle_timeout_minutes"] <= 1
    assert "RAY_FAKE_CLUSTER=1" in open(FAKE).read()  # the header says how to run it
