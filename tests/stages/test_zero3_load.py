"""Under ZeRO-3 no rank builds a full copy of the model before partitioning (no Ray needed).

A one-rank gloo process group stands in for a Train worker: with the HF DeepSpeed config kept
alive as the worker does (:func:`fnsft.workers.stats.zero3_init`), the model is
built partitioned both from a folder (``from_pretrained``) and from handed-over weights
(:func:`fnsft.models.handle._load_into_zero3`), and the partitions hold the right weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from fnsft.testing import REPO

pytestmark = pytest.mark.slow  # a fresh Python with DeepSpeed's ZeRO-3 init: ≈8 s

SCRIPT = textwrap.dedent("""
    import json, os, sys, types
    import torch, torch.distributed as dist
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=sys.argv[3], RANK="0", LOCAL_RANK="0", WORLD_SIZE="1")
    dist.init_process_group("gloo", rank=0, world_size=1)
    import deepspeed
    from transformers import AutoConfig, AutoModelForCausalLM
    from fnsft.runtime.deepspeed_config import build_deepspeed_config
    from fnsft.workers.stats import zero3_init, zero3_load_stats
    from fnsft.models.handle import _load_into_zero3

    model_dir, out = sys.argv[1], sys.argv[2]
    ds = types.SimpleNamespace(enabled=True, zero_stage=3, on_single_worker=True, offload_optimizer=False,
                               offload_param=False, config_file=None)
    config = types.SimpleNamespace(load_in_4bit=False, load_in_8bit=False)
    job = types.SimpleNamespace(stage_config=config, deepspeed=build_deepspeed_config(ds, False, 1))
    args = dict(output_dir=out, per_device_train_batch_size=2, use_cpu=True, report_to="none",
                deepspeed=job.deepspeed)
    keep = zero3_init(job, args)
    reference = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)  # partitioned too
    folder = zero3_load_stats(reference)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_dir), dtype=torch.float32)
    built = zero3_load_stats(model)
    # Handed-over weights (here: the folder's, made different so a skipped load would show).
    from safetensors.torch import load_file
    state = {k: v + 1.0 for k, v in load_file(os.path.join(model_dir, "model.safetensors")).items()}
    state.setdefault("lm_head.weight", state["model.embed_tokens.weight"])
    _load_into_zero3(model, state)
    worst = 0.0
    for name, p in model.named_parameters():
        with deepspeed.zero.GatheredParameters([p]):
            worst = max(worst, float((p.detach() - state[name]).abs().max()))
    print("RESULT " + json.dumps({"folder": folder, "built": built, "after": zero3_load_stats(model),
                                  "worst": worst, "full": sum(p.ds_numel for p in model.parameters())}))
""")


def test_zero3_builds_partitioned_from_folder_and_from_weights(tmp_path, tiny_model_dir):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    env = {**os.environ, "PYTHONPATH": REPO}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, tiny_model_dir, str(tmp_path), port], env=env,
                          capture_output=True, text=True, timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(lines[-1][len("RESULT "):])
    for stats in (r["folder"], r["built"], r["after"]):
        assert stats == {"zero3_partitioned_at_load": True, "params_materialized_at_load": 0}
    assert r["full"] > 100_000  # the tiny model's parameters exist, only not in full on this rank
    assert r["worst"] < 1e-6  # every partition holds the handed-over weights
