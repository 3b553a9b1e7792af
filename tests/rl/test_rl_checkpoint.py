"""RL mid-stage checkpoints (``rl.save_steps``): a killed Train worker resumes the loop.

The unit test round-trips the plain-torch checkpoint without Ray; the end-to-end test SIGKILLs
the worker of a GRPO stage under DeepSpeed after its first checkpoints and checks that Ray
Train restarted the group from one: the loop continues from that iteration (not from 0) and the
history has every iteration exactly once.
"""

import json
import os
import random
from types import SimpleNamespace

import pytest
import torch

from fnsft.workers.rl import checkpoint as rl_checkpoint
from fnsft.rl import AdaptiveKLController


def _fake_trainer(seed: int):
    torch.manual_seed(seed)
    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 1))
    module[0].bias.requires_grad_(False)  # frozen tensors are not part of the checkpoint
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    return SimpleNamespace(
        module=module, strategy=SimpleNamespace(engine=None, optimizer=optimizer, scheduler=scheduler),
        rank=0, history=[], evals=[], order=[], rng=random.Random(seed), kl_ctl=AdaptiveKLController(0.1, 6.0, 100))


def test_torch_checkpoint_round_trip(tmp_path):
    a = _fake_trainer(0)
    for _ in range(3):  # optimizer/scheduler state and moved weights
        a.module(torch.randn(2, 4)).sum().backward()
        a.strategy.optimizer.step()
        a.strategy.scheduler.step()
    a.history, a.evals, a.order = [{"iteration": 1, "reward_mean": 0.5}], [{"iteration": 0}], [3, 1, 2]
    a.rng.random()
    a.kl_ctl.update(12.0, 10)
    rl_checkpoint.save(a, 7, str(tmp_path / "ckpt"))

    b = _fake_trainer(1)
    assert rl_checkpoint.load(b, str(tmp_path / "ckpt")) == 7
    for (name, pa), pb in zip(a.module.named_parameters(), b.module.parameters()):
        if pa.requires_grad:
            assert torch.equal(pa, pb), name
    assert not torch.equal(a.module[0].bias, b.module[0].bias)  # frozen: left alone
    assert b.strategy.scheduler.state_dict()["last_epoch"] == 3
    assert b.strategy.optimizer.state_dict()["state"][0]["step"] == 3
    assert (b.history, b.evals, b.order) == (a.history, a.evals, a.order)
    assert b.rng.random() == a.rng.random()
    assert b.kl_ctl.value == a.kl_ctl.value != 0.1


@pytest.mark.slow
def test_killed_rl_worker_resumes_from_checkpoint(tmp_path, ray_session):
    from fnsft.pipeline.driver import Pipeline
    from fnsft.testing import EXAMPLES, TINY, KillAfterCheckpoint

    out = tmp_path / "out"
    stage = {
        "dataset_name_or_path": os.path.join(EXAMPLES, "arithmetic", "train.jsonl"), "algorithm": "grpo",
        "num_iterations": 30, "save_steps": 3, "prompts_per_iteration": 4, "num_generations": 4,
        "max_new_tokens": 8, "learning_rate": 3e-3, "kl_coef": 0.0,
        "rewards": [{"type": "target_chars", "chars": "the"}], "report_to": ["none"],
        "save_intermediate": False, "verify_weight_sync": True,
        "generation": {"num_cpus": 1}, "reward": {"num_cpus": 0.25},
    }
    cfg = {"model_name_or_path": TINY, "output_dir": str(out), "stages": ["rl"],
           "resources": {"num_workers": 1, "max_failures": 1},
           "deepspeed": {"zero_stage": 2, "on_single_worker": True}, "stage_configs": {"rl": stage}}
    with KillAfterCheckpoint(out, "01_rl", "rl", rank=0) as killer:
        summary = Pipeline.from_dict(cfg).run()
    assert killer.pid, "the worker was never killed (the stage ended before its checkpoints?)"
    rl = summary["stages"]["rl"]
    metrics = rl["metrics"]
    assert metrics["resumed_from_iteration"] >= 3 and metrics["resumed_from_iteration"] % 3 == 0, metrics
    assert metrics["strategy"] == "deepspeed-zero2"
    with open(rl["artifacts"]["rl_history"]) as f:
        history = json.load(f)
    assert [h["iteration"] for h in history] == list(range(1, 31))  # restored, then continued
    assert metrics["weight_sync_mismatches"] == 0  # the actors got the restored weights
