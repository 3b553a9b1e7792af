"""``torch_dtype: auto`` on a CPU: bfloat16 where it was measured faster (AMX-BF16 and a model at
least 256 wide), float32 elsewhere; the plan says which, and a stage trains in what was chosen."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from fnsft.models import precision
from fnsft.models.builtin import materialize_builtin
from fnsft.testing import TINY, tiny_sft_config


def _model_dir(tmp_path, hidden: int) -> str:
    """tiny-llama's tokenizer with a random 1-layer Llama ``hidden`` wide."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = tmp_path / f"llama{hidden}"
    shutil.copytree(materialize_builtin(TINY), out)
    cfg = json.loads((out / "config.json").read_text())
    cfg.update(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=1, head_dim=hidden // 4)
    for f in out.glob("*.safetensors"):
        f.unlink()
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**{k: v for k, v in cfg.items() if k != "architectures"})).save_pretrained(out)
    return str(out)


@pytest.mark.parametrize("amx", [True, False])
def test_auto_follows_the_cpu_and_the_model_width(tmp_path, monkeypatch, amx):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: amx)
    wide, narrow = _model_dir(tmp_path, 256), materialize_builtin(TINY)
    got = precision.resolve_precision("auto", False, wide)
    assert got.compute == ("bfloat16" if amx else "float32") and got.bf16 == amx
    assert ("hidden size 256 >= 256" if amx else "no AMX-BF16") in got.reason
    assert precision.resolve_precision("auto", False, narrow).compute == "float32"  # 64 wide: 0.53x in bf16
    assert precision.resolve_precision("auto", False, None).compute == "float32"  # unknown width: the safe choice
    assert precision.resolve_precision("float32", False, wide).compute == "float32"  # asked for: kept
    line = precision.describe_torch_dtype("auto", wide)
    assert ("bfloat16 (AMX-BF16, hidden size 256" if amx else "float32 (no AMX-BF16") in line, line
    assert "float32" in precision.describe_torch_dtype("auto", TINY) and precision.describe_torch_dtype("float32", TINY) == "float32"


def test_a_handle_gives_every_process_the_drivers_width(tmp_path, monkeypatch):
    """A rebuild handle (adapter folder + base) resolves from its base's width, as the stage did."""
    from fnsft.models.handle import ModelHandle

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    wide = _model_dir(tmp_path, 256)
    base = ModelHandle(source=wide, hidden_size=None)
    rebuild = ModelHandle(source=str(tmp_path), adapter=str(tmp_path), base=base)
    assert base.model_width() == 256 and rebuild.model_width() == 256
    assert precision.resolve_precision("auto", False, rebuild).compute == "bfloat16"
    told = ModelHandle(source=str(tmp_path), hidden_size=64)  # the driver's reading wins over the folder
    assert precision.resolve_precision("auto", False, told).compute == "float32"
    assert precision.dtype_fingerprint("auto", 256) == "auto:cpu-bfloat16"
    assert precision.dtype_fingerprint("auto", 64) == "auto" and precision.dtype_fingerprint("float32", 256) == "float32"


def test_plan_shows_what_auto_chose(tmp_path):
    from fnsft.pipeline.plan import build_plan, describe_plan

    text = describe_plan(build_plan(data=tiny_sft_config(tmp_path / "o")))
    assert "torch_dtype: auto: on this machine's CPUs float32" in text, text


@pytest.mark.slow
def test_sft_stage_trains_in_the_dtype_auto_chose(tmp_path, ray_session):
    """A 256-wide model: bfloat16 autocast on this machine when it has AMX-BF16 (float32 otherwise),
    float32 master weights either way, and the held-out loss falls."""
    from fnsft.pipeline import Pipeline

    cfg = tiny_sft_config(tmp_path / "o", num_train_epochs=3)
    cfg.update(model_name_or_path=_model_dir(tmp_path, 256), resources={"num_workers": 1})
    m = Pipeline.from_dict(cfg).run()["stages"]["sft"]["metrics"]
    import torch

    if torch.cuda.is_available():
        pytest.skip("checks the CPU choice")
    want = "bfloat16" if precision.cpu_has_native_bf16() else "float32"
    assert m["compute_dtype"] == want, m.get("compute_dtype_reason")
    assert m["eval_loss"] < 0.9 * m["before_eval_loss"], m
    assert os.path.isdir(tmp_path / "o")
