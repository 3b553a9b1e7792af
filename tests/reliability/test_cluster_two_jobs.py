"""Two pipelines submitted at once with `ray job submit` to one Ray head on 127.0.0.1.

Each run has its own hand-off store (named per run), role actors and Train run names. Before
that, both shared one store owned by the first driver, and the second job died with
`ActorDiedError ... all references removed` as soon as the first ended. The head has 2 CPUs
and each job's lone worker asks for both (the default: a node's CPUs), so the second job's
Train run waits for the first's to finish and hands its weights back after the first driver
has gone: exactly the case that broke.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess

import pytest
import yaml

from fnsft.testing import EXAMPLES, REPO, TINY, ray_head

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


def _state(path: str) -> dict:
    from safetensors.torch import load_file

    files = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
    assert files, f"no safetensors in {path}"
    out = {}
    for f in files:
        out.update(load_file(os.path.join(path, f)))
    return out


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)


def test_two_pipelines_at_once_on_one_cluster(tmp_path):
    outs, procs = {}, {}
    runtime_env = tmp_path / "runtime_env.yaml"
    runtime_env.write_text(yaml.safe_dump({"env_vars": {
        "FNSFT_CACHE": str(tmp_path / "cache"), "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": REPO}}))
    with ray_head(tmp_path, num_cpus=2) as (url, env, token):
        for name, lr in (("a", 3e-3), ("b", 1e-3)):
            outs[name] = tmp_path / f"out_{name}"
            config = tmp_path / f"{name}.yaml"
            config.write_text(yaml.safe_dump({
                "model_name_or_path": TINY, "output_dir": str(outs[name]), "stages": ["sft"],
                "save_final_model": True,
                "stage_configs": {"sft": {
                    "dataset_name_or_path": os.path.join(EXAMPLES, "sample_data.jsonl"), "max_steps": 8,
                    "per_device_train_batch_size": 8, "max_length": 64, "learning_rate": lr,
                    "save_steps": 0, "eval_split": 0.0, "report_to": ["none"]}},
            }))
            sid = f"fnsft-two-{name}-{secrets.token_hex(3)}"
            procs[name] = subprocess.Popen(
                ["ray", "job", "submit", "--submission-id", sid, "--runtime-env", str(runtime_env), "--",
                 "python", "-m", "fnsft.cli", "--config", str(config)],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        logs = {name: p.communicate(timeout=1400)[0] for name, p in procs.items()}

    for name, p in procs.items():
        assert p.returncode == 0, f"job {name} failed:\n{logs[name][-5000:]}"
        assert "ActorDiedError" not in logs[name]
        summary = json.loads((outs[name] / "pipeline_summary.json").read_text())
        assert summary["status"] == "completed" and summary["stages"]["sft"]["status"] == "completed"
        assert summary["stages"]["sft"]["metrics"]["global_step"] == 8

    final = {name: _state(str(outs[name] / "final_model")) for name in outs}
    stage = {name: _state(str(outs[name] / "01_sft" / "model")) for name in outs}
    # Each run's final model came through its own store and is the model its own stage saved;
    # different learning rates give different models.
    assert _equal(final["a"], stage["a"]) and _equal(final["b"], stage["b"])
    assert not _equal(final["a"], final["b"])
