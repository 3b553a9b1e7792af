"""Start-up: the worker's optional-integration skip and the phase timings (no timed assertions)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from fnsft.workers.startup_marks import import_worker_libraries, phase_seconds
from fnsft.utils.imports import needed_integrations

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A fresh process, as a Train worker is: skip, then import what an SFT/DPO worker imports and
# build a LoRA model with PEFT (which would import bitsandbytes) and TRL's trainer module.
_WORKER = r"""
import json, sys
from types import SimpleNamespace
from fnsft.utils.imports import needed_integrations, skip_unused_integrations
cfg = SimpleNamespace(report_to=sys.argv[1].split(",") if sys.argv[1] else [], load_in_4bit=sys.argv[2] == "1",
                      load_in_8bit=False, optim="adamw_torch")
skipped = skip_unused_integrations(needed_integrations(cfg))
import torch, transformers, peft, deepspeed
from transformers import LlamaConfig, LlamaForCausalLM
from trl import SFTTrainer, DPOTrainer
model = peft.get_peft_model(LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
    num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2)),
    peft.LoraConfig(r=2, target_modules="all-linear", task_type="CAUSAL_LM"))
loss = model(input_ids=torch.tensor([[1, 2, 3]]), labels=torch.tensor([[1, 2, 3]])).loss
loss.backward()
print("RESULT " + json.dumps({"skipped": skipped, "finite": bool(torch.isfinite(loss)),
      "loaded": sorted(m for m in ("wandb", "mlflow", "bitsandbytes") if sys.modules.get(m) is not None)}))
"""


def _worker(report_to: str, four_bit: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": ROOT}
    out = subprocess.run([sys.executable, "-c", _WORKER, report_to, "1" if four_bit else "0"], env=env,
                         capture_output=True, text=True, timeout=600)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    assert line, out.stdout[-2000:] + out.stderr[-3000:]
    return json.loads(line[0][len("RESULT "):])


@pytest.mark.slow  # a fresh Python importing torch/transformers/TRL/PEFT: ≈7 s each
def test_worker_skips_unused_integrations_and_still_trains_lora():
    res = _worker("", four_bit=False)
    assert res["skipped"] == ["wandb", "mlflow", "bitsandbytes"]
    assert res["loaded"] == []  # TRL, DeepSpeed and PEFT imported without them
    assert res["finite"]  # a LoRA model still builds and back-propagates


@pytest.mark.slow  # a fresh Python importing torch/transformers/TRL/PEFT: ≈7 s each
def test_worker_keeps_what_the_stage_asks_for():
    res = _worker("mlflow,tensorboard", four_bit=True)
    assert res["skipped"] == ["wandb"]
    assert "bitsandbytes" in res["loaded"] and "wandb" not in res["loaded"]


def test_needed_integrations_reads_the_stage_config():
    cfg = SimpleNamespace(report_to=["none"], load_in_4bit=False, load_in_8bit=False, optim="adamw_torch")
    assert needed_integrations(cfg) == set()
    assert needed_integrations(SimpleNamespace(report_to="all")) == {"wandb", "mlflow"}
    assert needed_integrations(SimpleNamespace(report_to=["wandb"], optim="paged_adamw_8bit")) == {"wandb", "bitsandbytes"}
    assert needed_integrations(SimpleNamespace(load_in_8bit=True)) == {"bitsandbytes"}
    assert needed_integrations(object()) == set()  # a custom stage's config without these fields


def test_phase_seconds_are_consecutive_differences():
    points = [("worker_group_start", 12.0, 1.5), ("worker_imports", 15.0, 4.0), ("first_step", 16.5, 5.0)]
    out = phase_seconds(10.0, points)
    assert out["worker_group_start_s"] == 2.0 and out["worker_group_start_cpu_s"] == 1.5
    assert out["worker_imports_s"] == 3.0 and out["worker_imports_cpu_s"] == 2.5
    assert out["first_step_s"] == 1.5 and out["startup_s"] == 6.5
    assert phase_seconds(10.0, []) == {}


def test_worker_libraries_are_frozen_out_of_the_garbage_collector():
    import gc

    import trl

    job = SimpleNamespace(stage_config=SimpleNamespace(use_peft=False), deepspeed=None)
    config_cls = trl.SFTConfig  # (TRL imports it on first access)
    before = gc.get_freeze_count()
    assert any(o is config_cls for o in gc.get_objects())  # tracked by the collector
    try:
        import_worker_libraries(job)
        assert gc.get_freeze_count() > before + 10_000  # the imported libraries' objects
        assert not any(o is config_cls for o in gc.get_objects())  # out of its generations
    finally:
        gc.unfreeze()  # this test process goes on
