"""A stage whose loss turns NaN/inf stops at once with one line, and nothing runs downstream."""

from __future__ import annotations

import json
import os

import pytest

from fnsft.testing import tiny_sft_config
from tests.precision.test_precision_hf_stages import build_worker_trainer

ABSURD_LR = 1e9


def test_absurd_learning_rate_stops_training_at_the_first_nan(tmp_path):
    from fnsft.workers.finite_guard import NonFiniteLoss

    trainer, _ = build_worker_trainer(tmp_path, "sft", "float32", rows=16, learning_rate=ABSURD_LR,
                                      max_steps=50, per_device_train_batch_size=2, max_grad_norm=0.0)
    with pytest.raises(NonFiniteLoss) as info:
        trainer.train()
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("stage sft:") and "learning rate" in msg, msg
    step = trainer.state.global_step
    assert f"at step {step + 1}" in msg and step < 50, (step, msg)  # stopped at once, not after 50 steps


def test_nan_eval_loss_is_caught(tmp_path):
    from transformers import TrainerControl, TrainerState

    from fnsft.workers.finite_guard import NonFiniteLoss

    trainer, _ = build_worker_trainer(tmp_path, "sft", "float16", max_steps=1)
    guard = [cb for cb in trainer.callback_handler.callbacks if type(cb).__name__ == "EvalGuard"][0]
    state = TrainerState(global_step=7)
    with pytest.raises(NonFiniteLoss, match="eval_loss is nan at step 7.*float16 overflow"):
        guard.on_evaluate(trainer.args, state, TrainerControl(), metrics={"eval_loss": float("nan")})


@pytest.mark.slow
def test_nan_stage_stops_the_pipeline(tmp_path, ray_session):
    """SFT → DPO with an absurd SFT learning rate: SFT fails with one line, DPO never runs."""
    from fnsft.errors import StageError
    from fnsft.pipeline import Pipeline

    cfg = tiny_sft_config(tmp_path / "out", learning_rate=ABSURD_LR, max_grad_norm=0.0, num_train_epochs=1,
                          per_device_train_batch_size=4)
    cfg["resources"] = {"num_workers": 1, "max_failures": 1}
    cfg["stages"] = ["sft", "dpo"]
    cfg["stage_configs"]["dpo"] = {"preference_dataset_path": os.path.join(os.path.dirname(__file__), "..", "..",
                                                                           "examples", "preferences.jsonl"),
                                   "max_steps": 1, "report_to": ["none"], "save_steps": 0}
    with pytest.raises(StageError) as info:
        Pipeline.from_dict(cfg).run()
    msg = str(info.value)
    print("stage error:", msg)
    assert "\n" not in msg and msg.startswith("stage sft:") and ("is nan" in msg or "is inf" in msg), msg
    summary = json.load(open(tmp_path / "out" / "pipeline_summary.json"))
    assert summary["stages"]["sft"]["status"] == "failed"
    assert "dpo" not in summary["stages"] or summary["stages"]["dpo"].get("status") != "completed"
    assert not os.path.isdir(tmp_path / "out" / "dpo" / "model")
