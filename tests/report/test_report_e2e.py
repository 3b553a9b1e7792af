"""configs/pipeline_config.yaml (SFT -> DPO -> RL) on the tiny model, tracked to a local MLflow
store: the report opens in a real Chromium with the timeline, the curves and the side-by-side
answers; the model card is written; MLflow holds one parent run and a child run per stage with
its metrics (SFT/DPO logged live from the Ray Train workers, RL from its history)."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from browser import open_page, pixel_stddev  # noqa: E402

from fnsft.cli import pipeline_main  # noqa: E402
from fnsft.testing import REPO  # noqa: E402

pytestmark = pytest.mark.slow

SHRINK = [
    "model_name_or_path=builtin:tiny-llama",
    "stage_configs.sft.max_steps=6", "stage_configs.sft.logging_steps=2", "stage_configs.sft.save_steps=0",
    "stage_configs.dpo.max_steps=4", "stage_configs.dpo.logging_steps=2", "stage_configs.dpo.save_steps=0",
    "stage_configs.rl.num_iterations=3", "stage_configs.rl.prompts_per_iteration=4",
    "stage_configs.rl.num_generations=2", "stage_configs.rl.logging_steps=1",
    "report.max_new_tokens=12", "report.num_prompts=3",
] + [f"stage_configs.{s}.report_to=[mlflow]" for s in ("sft", "dpo", "rl")]


@pytest.mark.timeout(2400)  # ~2 min on an idle 2-core machine; a shared, busy one needs far more
def test_pipeline_report_in_chromium_and_mlflow_runs(tmp_path, ray_session, monkeypatch):
    from mlflow.tracking import MlflowClient

    out = tmp_path / "run"
    store = f"file:{tmp_path / 'mlruns'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "fnsft-test")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store for opt-ins
    monkeypatch.chdir(REPO)
    args = ["--config", "configs/pipeline_config.yaml", "--output_dir", str(out)]
    for s in SHRINK:
        args += ["--set", s]
    assert pipeline_main(args) == 0

    # The side-by-side answers: base first, then one column per stage, every prompt answered.
    answers = json.load(open(out / "report_answers.json"))
    assert [c["stage"] for c in answers["columns"]] == ["base", "sft", "dpo", "rl"]
    assert len(answers["prompts"]) == 3 and answers["prompt_source"].startswith("held-out rows of")
    assert all(len(c["answers"]) == 3 and "error" not in c for c in answers["columns"])

    shot = str(tmp_path / "report.png")
    page = open_page(str(out / "report.html"), shot, width=1400, height=2400)
    assert page["errors"] == [], page["errors"]
    assert pixel_stddev(shot) > 10  # not blank
    dom = page["dom"]
    for c in answers["columns"]:
        for a in c["answers"]:
            assert a.split("\n")[0][:20].replace("&", "&amp;").replace("<", "&lt;") in dom
    for stage in ("sft", "dpo", "rl"):
        assert f'id="stage-{stage}"' in dom
    assert "eval_loss" in dom and "eval_rewards/accuracies" in dom and "reward_mean" in dom
    assert "total_flos" not in dom and dom.count('class="panel"') >= 8
    assert "deepspeed-zero2" in dom  # the strategy read from the stage metrics
    if os.environ.get("FNSFT_REPORT_SCREENSHOT"):  # docs/: keep the picture of this run
        shutil.copy(shot, os.environ["FNSFT_REPORT_SCREENSHOT"])

    card = open(out / "final_model" / "README.md").read()
    assert card.startswith("---\nbase_model: builtin:tiny-llama\n") and "| sft | eval_loss |" in card

    # MLflow: one parent run (the resolved config as params), a child per stage with its metrics.
    client = MlflowClient(tracking_uri=store)
    exp = client.get_experiment_by_name("fnsft-test")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.data.params["stage_configs.sft.max_steps"] == "6"
    children = {r.data.tags.get("fnsft.stage"): r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert set(children) == {"sft", "dpo", "rl"}
    assert len(client.get_metric_history(children["sft"].info.run_id, "loss")) == 3  # live, from the worker
    assert "learning_rate" in children["sft"].data.params  # HF's callback logged its arguments there
    assert "rewards/accuracies" in children["dpo"].data.metrics
    assert len(client.get_metric_history(children["rl"].info.run_id, "reward_mean")) == 3
    assert children["rl"].data.metrics["summary/reward_end"] >= 0
    assert all(r.info.status == "FINISHED" for r in runs)
