"""Bounded disk with LoRA: adapters kept, merged copies only where a stage or final_model needs
them, and a resume that rebuilds a dropped copy from what is left (real Ray, tiny model).

SFT (LoRA) -> DPO (LoRA). After the run, 01_sft keeps its adapter but not its merged copy (DPO has
its own); merging SFT's adapter into the base, then DPO's into that, gives exactly DPO's model:
DPO trained from SFT's weights. Reruns: a changed DPO restores SFT's copy from its adapter and
trains from it; with 02_dpo/model deleted, --save_final_model rebuilds DPO's weights from both
adapters and then keeps no stage copy beside final_model; a last rerun trains nothing.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
import yaml

from fnsft.cli import pipeline_main
from fnsft.testing import EXAMPLES, TINY

pytestmark = pytest.mark.slow
ADAPTER = ("adapter_model.safetensors", "adapter_config.json", "README.md")


def _summary(out):
    with open(os.path.join(out, "pipeline_summary.json")) as f:
        return json.load(f)


def _state(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path).state_dict()


def _merged(base_state_or_dir, adapter):
    """The float32 merge the stages hand on: a base (a folder, or a state dict on the tiny model)."""
    import torch
    from transformers import AutoModelForCausalLM

    from fnsft.models.adapters import merge_adapter
    from fnsft.models.builtin import materialize_builtin

    if isinstance(base_state_or_dir, str):
        base = AutoModelForCausalLM.from_pretrained(base_state_or_dir, dtype=torch.float32)
    else:
        base = AutoModelForCausalLM.from_pretrained(materialize_builtin(TINY), dtype=torch.float32)
        base.load_state_dict(base_state_or_dir)
    return merge_adapter(base, adapter, torch.float32).state_dict()


def _same(a, b, atol=1e-6):
    import torch

    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=atol) for k in a)


def test_lora_keeps_adapters_and_needed_copies_and_resumes(tmp_path, ray_session, tiny_model_dir):
    from fnsft.pipeline.disk import dir_bytes

    out = tmp_path / "run"
    prefs = tmp_path / "prefs.jsonl"
    prefs.write_text("\n".join(open(os.path.join(EXAMPLES, "preferences.jsonl")).read().splitlines()[:12]) + "\n")
    lora = {"use_peft": True, "lora_r": 8, "lora_alpha": 16, "report_to": ["none"], "eval_split": 0,
            "max_length": 96, "per_device_train_batch_size": 4, "save_steps": 0, "learning_rate": 3e-3}
    cfg = {
        "model_name_or_path": TINY, "output_dir": str(out), "resources": {"num_workers": 1},
        "report": {"num_prompts": 2, "max_new_tokens": 8}, "stages": ["sft", "dpo"],
        "stage_configs": {
            "sft": {**lora, "dataset_name_or_path": os.path.join(EXAMPLES, "sample_data.jsonl"),
                    "max_train_samples": 32, "max_steps": 4},
            "dpo": {**lora, "preference_dataset_path": str(prefs), "max_steps": 3},
        },
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    sft_dir, dpo_dir = out / "01_sft", out / "02_dpo"

    # 1) Both stages keep their adapter (+ card); only DPO, the latest, keeps a merged copy.
    assert pipeline_main(["--config", str(path)]) == 0
    st = _summary(out)["stages"]
    for d in (sft_dir, dpo_dir):
        assert all((d / "adapter" / f).is_file() for f in ADAPTER), os.listdir(d / "adapter")
    assert not (sft_dir / "model").exists() and (dpo_dir / "model" / "config.json").is_file()
    assert st["sft"]["model_path"] is None and st["sft"]["adapter_path"] == str(sft_dir / "adapter")
    assert st["dpo"]["model_path"] == str(dpo_dir / "model")
    assert "Rerunning the same `fnsft-pipeline`" in (sft_dir / "adapter" / "README.md").read_text()
    # disk_bytes: what each folder holds now; SFT's fell by more than the merged copy it dropped.
    copy_bytes = dir_bytes(str(dpo_dir / "model"))
    assert st["sft"]["disk_bytes"] == dir_bytes(str(sft_dir)) < copy_bytes
    assert st["dpo"]["disk_bytes"] == dir_bytes(str(dpo_dir)) > copy_bytes
    assert abs(_summary(out)["disk_bytes"] - dir_bytes(str(out))) < 64 << 10  # + report files written after

    # DPO trained from SFT's weights: SFT's adapter on the base, then DPO's on that, is DPO's model;
    # DPO's adapter on the plain base is not.
    sft_weights = _merged(tiny_model_dir, str(sft_dir / "adapter"))
    dpo_weights = _state(str(dpo_dir / "model"))
    assert _same(_merged(sft_weights, str(dpo_dir / "adapter")), dpo_weights)
    assert not _same(_merged(tiny_model_dir, str(dpo_dir / "adapter")), dpo_weights, atol=1e-4)
    assert not _same(sft_weights, _state(tiny_model_dir), atol=1e-4)

    # 2) DPO changed: SFT is skipped, its copy rebuilt from the adapter; DPO trains from it.
    args = ["--config", str(path), "--set", "stage_configs.dpo.beta=0.2"]
    assert pipeline_main(args) == 0
    st = _summary(out)["stages"]
    assert st["sft"]["status"] == "skipped (completed)" and st["dpo"]["status"] == "completed"
    log_text = (out / "pipeline_training.log").read_text()
    assert f"Rebuilt {sft_dir / 'model'} from the adapter" in log_text
    dpo2 = _state(str(dpo_dir / "model"))
    assert not _same(dpo2, dpo_weights, atol=1e-7)  # a new DPO ...
    assert _same(_merged(sft_weights, str(dpo_dir / "adapter")), dpo2)  # ... on SFT's weights
    assert not (sft_dir / "model").exists()  # dropped again once DPO had its own

    # 3) DPO's merged copy deleted (by hand, or lost): both stages skip; final_model is rebuilt
    #    from base + SFT adapter + DPO adapter, and no stage copy stays beside it.
    shutil.rmtree(dpo_dir / "model")
    assert pipeline_main(args + ["--save_final_model"]) == 0
    s = _summary(out)
    assert [s["stages"][n]["status"] for n in ("sft", "dpo")] == ["skipped (completed)"] * 2
    assert _same(_state(str(out / "final_model")), dpo2)
    assert not (sft_dir / "model").exists() and not (dpo_dir / "model").exists()
    assert s["final_model_bytes"] > s["stages"]["sft"]["disk_bytes"] + s["stages"]["dpo"]["disk_bytes"]

    # 4) Nothing left to do: stages skipped, final_model already holds DPO's weights.
    assert pipeline_main(args + ["--save_final_model"]) == 0
    assert "is up to date" in (out / "pipeline_training.log").read_text().split("fnsft pipeline:")[-1]
    assert _same(_state(str(out / "final_model")), dpo2)
