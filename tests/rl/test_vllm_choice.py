"""Which generation engine a stage runs (``rl.generation.engine``), decided before Ray, and how the
engine's weights are compared with the pushed ones. Fast: no Ray, no vLLM (a stand-in
interpreter answers the venv probe; vLLM itself runs in tests/rl/test_rl_vllm.py)."""

from __future__ import annotations

import os
import stat

import pytest
import ray
import torch

from fnsft.actors import vllm_runtime
from fnsft.actors.vllm_runtime import choose_engine
from fnsft.errors import ConfigError
from fnsft.models.builtin import TINY_LLAMA_HD32, materialize_builtin
from fnsft.pipeline.plan import build_plan
from fnsft.testing import EXAMPLES, TINY


def _fake_python(tmp_path, name: str, ray_version: str) -> str:
    """An executable that answers :func:`vllm_runtime.probe_python` like a venv with vLLM would."""
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\necho '{{\"vllm\": \"0.32.0\", \"ray\": \"{ray_version}\", \"fnsft\": false}}'\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_hf_and_auto_on_cpu_stay_hf_and_say_why():
    assert choose_engine("hf", "", use_gpu=False).engine == "hf"
    auto = choose_engine("auto", "", use_gpu=False)
    assert auto.engine == "hf" and "CPU" in auto.reason and auto.runtime_env(1) == {}
    gpu = choose_engine("auto", "", use_gpu=True)  # no vLLM in the test env
    assert gpu.engine == "hf" and "not installed" in gpu.reason


def test_vllm_where_it_cannot_run_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("FNSFT_VLLM_PYTHON", str(tmp_path / "absent" / "python"))
    monkeypatch.delenv("FNSFT_VLLM_VENV", raising=False)
    with pytest.raises(ConfigError, match=r"rl.generation.engine: vllm is not usable here.*setup_test_tools.sh"):
        choose_engine("vllm", "", use_gpu=False)
    monkeypatch.setenv("FNSFT_VLLM_PYTHON", _fake_python(tmp_path, "old_ray", "1.0.0"))
    with pytest.raises(ConfigError, match=rf"pip install ray=={ray.__version__}"):
        choose_engine("vllm", "", use_gpu=False)


def test_vllm_cpu_build_runs_under_the_venv_python_with_our_fnsft(tmp_path, monkeypatch):
    py = _fake_python(tmp_path, "python", ray.__version__)
    monkeypatch.setenv("FNSFT_VLLM_PYTHON", py)
    # tiny-llama's heads of 16 have no CPU attention kernel in vLLM: refused by name.
    with pytest.raises(ConfigError, match="head_dim 16 has no CPU attention kernel"):
        choose_engine("vllm", materialize_builtin(TINY), use_gpu=False)
    choice = choose_engine("vllm", materialize_builtin(TINY_LLAMA_HD32), use_gpu=False)
    assert (choice.engine, choice.python, choice.device) == ("vllm", py, "cpu")
    env = choice.runtime_env(2)
    import fnsft

    assert env["py_executable"] == py
    assert env["env_vars"]["PYTHONPATH"] == os.path.dirname(os.path.dirname(fnsft.__file__))
    # the engine lives in the actor's process: a killed actor takes it along
    assert env["env_vars"]["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0" and env["env_vars"]["OMP_NUM_THREADS"] == "2"


def test_dry_run_plan_names_the_engine_and_rejects_an_unusable_vllm(tmp_path, monkeypatch):
    stage = {"dataset_name_or_path": os.path.join(EXAMPLES, "arithmetic", "train.jsonl"),
             "rewards": [{"type": "exact_match", "column": "answer"}]}
    cfg = {"model_name_or_path": TINY_LLAMA_HD32, "output_dir": str(tmp_path), "stages": ["rl"],
           "stage_configs": {"rl": stage}}
    plan = build_plan(data=cfg)
    assert "generation x1 (hf (auto on CPU" in plan.stages[0].stage.describe_plan()["roles"]
    monkeypatch.setenv("FNSFT_VLLM_PYTHON", str(tmp_path / "absent"))
    stage["generation"] = {"engine": "vllm"}
    with pytest.raises(ConfigError, match="stage_configs.rl.generation.engine: vllm is not usable here"):
        build_plan(data=cfg)
    stage["async_rollout"] = {"enabled": True}  # not tested on vLLM yet: refused by name
    with pytest.raises(ConfigError, match="stage_configs.rl.async_rollout.enabled: .*HF generation engine only"):
        build_plan(data=cfg)


def test_engine_view_converts_hf_weights_as_vllm_load_weights_does():
    from fnsft.actors.vllm_engine import engine_view

    hf = {f"model.layers.0.self_attn.{p}_proj.weight": torch.full((2, 3), float(i)) for i, p in enumerate("qkv")}
    hf.update({"model.layers.0.mlp.gate_proj.weight": torch.zeros(4, 3), "model.layers.0.mlp.up_proj.weight": torch.ones(4, 3),
               "model.embed_tokens.weight": torch.randn(5, 3), "model.norm.weight": torch.ones(3, dtype=torch.float64)})
    layout = {"packed": {"qkv_proj": ["q_proj", "k_proj", "v_proj"], "gate_up_proj": ["gate_proj", "up_proj"]},
              "params": {"model.layers.0.self_attn.qkv_proj.weight": ((6, 3), "torch.float32"),
                         "model.layers.0.mlp.gate_up_proj.weight": ((8, 3), "torch.float32"),
                         "model.embed_tokens.weight": ((5, 3), "torch.float32"),
                         "model.norm.weight": ((3,), "torch.float32"),
                         "lm_head.weight": ((5, 3), "torch.float32")}}  # tied: the embedding
    out = engine_view(hf, layout)
    assert out["model.layers.0.self_attn.qkv_proj.weight"][:, 0].tolist() == [0, 0, 1, 1, 2, 2]  # q, k, v in order
    assert out["model.layers.0.mlp.gate_up_proj.weight"][:, 0].tolist() == [0] * 4 + [1] * 4
    assert torch.equal(out["lm_head.weight"], hf["model.embed_tokens.weight"])
    assert out["model.norm.weight"].dtype == torch.float32  # the engine's dtype
    del hf["model.layers.0.mlp.up_proj.weight"]
    with pytest.raises(KeyError, match="up_proj"):
        engine_view(hf, layout)


def test_an_engine_that_misses_a_push_counts_as_a_mismatch():
    from fnsft.actors.serving import count_mismatches

    acks = [{"checksum": "a"}, {"checksum": "a", "engine_matches": True}]
    assert count_mismatches(acks, "a") == 0
    assert count_mismatches(acks + [{"checksum": "a", "engine_matches": False}], "a") == 1
    assert count_mismatches(acks + [{"checksum": "b", "engine_matches": True}], "a") == 1


def test_probe_python_reads_a_real_interpreter():
    import sys

    found = vllm_runtime.probe_python(sys.executable)  # the test env: ray, no vLLM
    assert found["ray"] == ray.__version__ and found["vllm"] is None
