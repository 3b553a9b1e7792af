"""report_to: [wandb] from the Ray workers, for real, in W&B offline mode: one run per stage in
one group (the pipeline run), the stage's resolved section in each run's config, its metrics in
the run's history — read back from the offline run files (no account, no network)."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wandb_offline import offline_runs  # noqa: E402

from fnsft.pipeline import Pipeline  # noqa: E402
from fnsft.testing import EXAMPLES, TINY  # noqa: E402


def test_wandb_defaults_last_for_one_run(tmp_path, monkeypatch):
    """The group/project fnsft chooses are this run's: a next pipeline in the process gets its own."""
    from fnsft.report.tracking import start_tracking

    for k in ("WANDB_RUN_GROUP", "WANDB_PROJECT"):
        monkeypatch.delenv(k, raising=False)
    t = start_tracking({}, [["wandb"]], str(tmp_path / "run"))
    assert os.environ["WANDB_RUN_GROUP"] == t.name and os.environ["WANDB_PROJECT"] == "fnsft"
    t.end()
    assert "WANDB_RUN_GROUP" not in os.environ and "WANDB_PROJECT" not in os.environ
    monkeypatch.setenv("WANDB_PROJECT", "mine")  # the user's own settings are kept
    start_tracking({}, [["wandb"]], str(tmp_path / "run")).end()
    assert os.environ["WANDB_PROJECT"] == "mine"


@pytest.mark.slow
@pytest.mark.long  # CI: test_wandb_defaults_last_for_one_run and the MLflow runs of tests/report/test_report_e2e.py
def test_wandb_offline_one_run_per_stage_grouped(tmp_path, ray_session, monkeypatch):
    wandb_dir = tmp_path / "wandb_files"
    wandb_dir.mkdir()
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(wandb_dir))
    monkeypatch.setenv("WANDB_SILENT", "true")
    for k in ("WANDB_RUN_GROUP", "WANDB_PROJECT", "WANDB_NAME", "WANDB_JOB_TYPE"):
        monkeypatch.delenv(k, raising=False)
    cfg = {
        "model_name_or_path": TINY, "output_dir": str(tmp_path / "run"), "stages": ["sft", "rl"],
        "resources": {"num_workers": 1}, "report": {"enabled": False},
        "stage_configs": {
            "sft": {"dataset_name_or_path": os.path.join(EXAMPLES, "sample_data.jsonl"), "max_train_samples": 40,
                    "max_steps": 4, "logging_steps": 2, "learning_rate": 3e-3, "per_device_train_batch_size": 4,
                    "max_length": 96, "eval_split": 0.1, "save_steps": 0, "report_to": ["wandb"]},
            "rl": {"dataset_name_or_path": os.path.join(EXAMPLES, "arithmetic", "train.jsonl"),
                   "algorithm": "grpo", "num_iterations": 3, "prompts_per_iteration": 4, "num_generations": 2,
                   "max_new_tokens": 6, "learning_rate": 3e-3, "rewards": [{"type": "target_chars", "chars": "the"}],
                   "generation": {"num_replicas": 1, "num_cpus": 1}, "report_to": ["wandb"]},
        },
    }
    summary = Pipeline.from_dict(cfg).run()
    assert summary["status"] == "completed"

    runs = {r["name"]: r for r in offline_runs(str(wandb_dir))}
    assert set(runs) == {"sft", "rl"}, [(r["name"], r["id"]) for r in runs.values()]
    # One group (the pipeline run), one project, a job type per stage.
    groups = {r["group"] for r in runs.values()}
    assert len(groups) == 1 and groups.pop().startswith("run-")
    assert {r["project"] for r in runs.values()} == {"fnsft"}
    assert runs["sft"]["job_type"] == "sft" and runs["rl"]["job_type"] == "rl"

    # The resolved config as parameters: the stage's own section (and HF's arguments for SFT).
    sft_cfg = runs["sft"]["config"]
    assert sft_cfg["fnsft"]["stage"] == "sft"
    assert sft_cfg["fnsft"]["stage_config"]["max_steps"] == 4
    assert sft_cfg["fnsft"]["stage_config"]["learning_rate"] == 3e-3
    assert sft_cfg["learning_rate"] == 3e-3  # TrainingArguments, from HF's WandbCallback
    assert runs["rl"]["config"]["fnsft"]["stage_config"]["num_iterations"] == 3

    # Metrics: SFT live from the Ray worker (every logging step, and the final evaluation after
    # training ended), RL from its history, one point per iteration.
    sft_hist = runs["sft"]["history"]
    losses = [h["train/loss"] for h in sft_hist if "train/loss" in h]
    assert len(losses) == 2 and all(v > 0 for v in losses)
    assert any("eval/loss" in h for h in sft_hist)
    assert abs(runs["sft"]["summary"]["eval/loss"] - summary["stages"]["sft"]["metrics"]["eval_loss"]) < 1e-6
    rewards = [h["reward_mean"] for h in runs["rl"]["history"] if "reward_mean" in h]
    assert len(rewards) == 3
    assert runs["rl"]["summary"]["summary/reward_end"] == pytest.approx(summary["stages"]["rl"]["metrics"]["reward_end"])
