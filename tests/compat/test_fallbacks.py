"""Outside the checked range every compat hook leaves the dependency as it is and says so, and
fnsft takes the public path."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_in_range_reads_the_installed_version():
    from fnsft.compat import in_range, installed_version

    ray = installed_version("ray")
    assert ray and in_range("ray", ray, ray[:-1] + (ray[-1] + 1,))
    assert not in_range("ray", (0,), ray) and not in_range("not-a-package-fnsft", (0,), (99,))
    assert installed_version("not-a-package-fnsft") == ()


def _outside(monkeypatch, module):
    monkeypatch.setattr(module, "checked", lambda: False)  # as if another version were installed


def test_lm_head_outside_range_leaves_trl_as_shipped(monkeypatch):
    pytest.importorskip("trl")
    import trl.trainer.utils as trl_utils

    from fnsft.compat import trl as trl_compat

    before = trl_utils._use_triton
    _outside(monkeypatch, trl_compat)
    assert trl_compat.compact_lm_head_on_cpu() is False
    assert trl_utils._use_triton is before


def test_lm_head_choice_switches_and_puts_trls_choice_back():
    """The benchmarks' side-by-side switch: compacting inside, TRL's own CPU choice (all positions)
    inside ``lm_head_choice(False)`` even after fnsft's workers compacted, the entry state after."""
    import torch
    import trl.trainer.utils as trl_utils

    from fnsft.compat import trl as trl_compat

    cpu, entry = torch.device("cpu"), trl_utils._use_triton
    with trl_compat.lm_head_choice(True) as on:
        assert on is True and trl_utils._use_triton(cpu) is True
        with trl_compat.lm_head_choice(False) as off:
            assert off is False and trl_utils._use_triton(cpu) is False
        assert trl_utils._use_triton(cpu) is True
    assert trl_utils._use_triton is entry


def test_ray_logging_outside_range_leaves_rays_printer(monkeypatch):
    from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

    from fnsft.compat import ray_logging
    from fnsft.runtime import log_routing

    handlers, add = list(dispatcher.handlers), dispatcher.add_handler
    _outside(monkeypatch, ray_logging)
    assert log_routing.route_worker_output(verbose=False, quiet_libraries=False) is False
    assert dispatcher.handlers == handlers and dispatcher.add_handler == add


def test_ray_logging_inside_range_routes_the_printer(monkeypatch):
    from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

    from fnsft.compat.ray_logging import PRINTER, wrap_worker_output_printer

    shown: list = []
    monkeypatch.setattr(dispatcher, "handlers", [(PRINTER, lambda data: shown.append(data))])
    monkeypatch.setattr(dispatcher, "add_handler", dispatcher.add_handler)  # restored after
    assert wrap_worker_output_printer(lambda printer: lambda data: printer({**data, "lines": ["routed"]}))
    assert wrap_worker_output_printer(lambda printer: lambda data: None)  # idempotent: wrapped once
    dispatcher.handlers[0][1]({"lines": ["x"]})
    assert shown == [{"lines": ["routed"]}]


def test_ray_train_and_autoscaler_outside_range_do_nothing(monkeypatch):
    import logging

    from fnsft.compat import ray_autoscaler, ray_train

    from ray.train.v2._internal.execution import context

    level = context.logger.level
    _outside(monkeypatch, ray_train)
    _outside(monkeypatch, ray_autoscaler)
    assert ray_train.quiet_train_report_logs() is False and context.logger.level == level
    assert ray_autoscaler.autoscaler_limits() is None and ray_autoscaler.autoscaler_v1_report() is None
    monkeypatch.undo()
    try:
        assert ray_train.quiet_train_report_logs() is True and context.logger.level == logging.WARNING
    finally:
        context.logger.setLevel(level)


# A fresh process where TRL counts as unchecked: the DPO trainer is TRL's own steps, and the
# stage's trainer still builds and computes a loss (length-grouped batches become random order).
_DPO_UNHOOKED = r"""
import fnsft.compat.trl as trl_compat
trl_compat.checked = lambda: False
from trl import DPOTrainer
from fnsft.compat.trl_dpo import HOOKED
from fnsft.workers.hf.dpo_trl import FnsftDPOTrainer
assert not HOOKED
for name in ("_prepare_dataset", "_precompute_ref_logps", "_get_train_sampler", "_get_eval_sampler"):
    assert getattr(FnsftDPOTrainer, name) is getattr(DPOTrainer, name), name
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig
from fnsft.models.builtin import materialize_builtin
from fnsft.testing import TINY
path = materialize_builtin(TINY)
rows = [{"prompt": "What is 2 + 2?", "chosen": " 4.", "rejected": " 5."},
        {"prompt": "Name a colour.", "chosen": " Red.", "rejected": " Dog."}]
cfg = DPOConfig(output_dir=__import__("sys").argv[1], use_cpu=True, report_to="none", max_length=64,
                per_device_train_batch_size=2, precompute_ref_log_probs=True, prediction_loss_only=True)
trainer = FnsftDPOTrainer(model=AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), args=cfg,
                          train_dataset=Dataset.from_list(rows), processing_class=AutoTokenizer.from_pretrained(path),
                          max_prompt_length=32)
assert "ref_chosen_logps" in trainer.train_dataset.column_names
batch = trainer.data_collator([trainer.train_dataset[0], trainer.train_dataset[1]])
with torch.no_grad():
    loss = trainer.compute_loss(trainer.model, batch).item()
assert loss == loss and abs(loss - 0.6931) < 1e-3, loss  # policy == reference: -log sigmoid(0)
print("OK")
"""


@pytest.mark.slow
def test_dpo_trainer_outside_range_runs_trls_own_steps(tmp_path):
    pytest.importorskip("trl")
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.run([sys.executable, "-c", _DPO_UNHOOKED, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=300, cwd=str(tmp_path))
    assert proc.stdout.strip().endswith("OK"), proc.stdout[-2000:] + proc.stderr[-3000:]
