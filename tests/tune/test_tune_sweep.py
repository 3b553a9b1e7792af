"""Sweeps (``fnsft-pipeline --tune``): search-space validation, real sweeps on local Ray, best config."""

from __future__ import annotations

import csv
import json
import os

import pytest
import yaml

from fnsft.cli import pipeline_main
from fnsft.testing import EXAMPLES, REPO, run_cli, tiny_sft_config

MY_STAGE = os.path.join(EXAMPLES, "custom_stage", "my_stage.py")

# A cheap stage whose metric depends on a swept value and which reports the weights it got.
SCORE_STAGE = '''
from dataclasses import dataclass, field

from fnsft.pipeline import Pipeline
from fnsft.stages.base import BaseStage, StageConfig, StageResult


@dataclass
class ScoreConfig(StageConfig):
    target: float = field(default=0.0, metadata={"help": "score = -(target - 2)^2"})


class ScoreStage(BaseStage):
    @property
    def stage_name(self):
        return "score"

    def execute(self, model, tokenizer, previous_result=None):
        from fnsft.models.checksum import weights_sha256

        lm = model.load()
        return StageResult(model=None, metrics={
            "value": -(self.config.target - 2.0) ** 2,
            "weights_sha256": weights_sha256(lm.state_dict()),
            "incoming_from": previous_result.stage_name if previous_result else "base",
        })


Pipeline.register_stage("score", ScoreStage)
'''


def _fast_sft(out, **sft):
    """One worker, DeepSpeed off: the quickest real SFT stage on the tiny model."""
    cfg = tiny_sft_config(out, num_train_epochs=1, **sft)
    cfg["resources"] = {"num_workers": 1}
    cfg["deepspeed"] = {"enabled": False}
    return cfg


def _write(tmp_path, cfg, name="pipeline.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _sha_of_dir(path):
    from transformers import AutoModelForCausalLM

    from fnsft.models.checksum import weights_sha256

    return weights_sha256(AutoModelForCausalLM.from_pretrained(path).state_dict())


# --- validation: no Ray, one-line errors --------------------------------------------------
def _tune(**kw):
    base = {"metric": "sft/eval_loss", "mode": "min", "num_samples": 2,
            "search_space": {"stage_configs.sft.learning_rate": {"loguniform": [1e-4, 1e-2]}}}
    base.update(kw)
    return base


def _two_stage(tmp_path, tune):
    cfg = _fast_sft(tmp_path / "out")
    cfg["plugins"] = [MY_STAGE]
    cfg["stages"] = ["sft", "my_stage"]
    cfg["stage_configs"]["my_stage"] = {"my_parameter": "What is 2 + 2?"}
    cfg["tune"] = tune
    return cfg


BAD_SWEEPS = [
    ({"search_space": {"stage_configs.sft.learnig_rate": {"loguniform": [1e-4, 1e-2]}}},
     "did you mean 'learning_rate'"),
    ({"search_space": {"stage_configs.sft.learning_rate": {"loguniform": [0, 1e-2]}}},
     "low must be > 0"),
    ({"search_space": {"stage_configs.sft.learning_rate": {"uniform": [0.5, 0.1]}}},
     "low must be below high"),
    ({"search_space": {"stage_configs.sft.learning_rate": {"logunifrom": [1e-4, 1e-2]}}},
     "unknown rule 'logunifrom' (did you mean 'loguniform'?)"),
    ({"search_space": {"stage_configs.sft.learning_rate": [1e-4, 1e-2]}}, "expected one sampling rule"),
    ({"search_space": {"stage_configs.sft.learning_rate": {"choice": [1e-3, -1]}}},
     "learning_rate: choice value -1 is rejected: stage_configs.sft.learning_rate: must be > 0"),
    ({"search_space": {"stage_configs.sft.per_device_train_batch_size": {"uniform": [1, 8]}}},
     "expected an integer, got 4.5"),
    ({"search_space": {"stage_configs.dpo.beta": {"loguniform": [0.01, 0.5]}}}, "no stage 'dpo' in stages"),
    ({"search_space": {"output_dir": {"choice": ["a", "b"]}}}, "'output_dir' cannot be swept"),
    ({"search_space": {"resources.num_wokers": {"choice": [1, 2]}}}, "did you mean 'num_workers'"),
    ({"search_space": {}}, "tune.search_space: empty"),
    ({"metric": "eval_loss"}, "tune.metric: expected <stage>/<metric>"),
    ({"metric": "sfx/eval_loss"}, "'sfx' is not a stage that runs (did you mean 'sft'?)"),
    ({"mode": "minimum"}, "tune.mode: 'minimum' is not accepted"),
    ({"num_sample": 3}, "tune.num_sample: unknown key (did you mean 'num_samples'?)"),
    ({"num_samples": 0}, "tune.num_samples: must be >= 1"),
    ({"scheduler": "hyperband"}, "tune.scheduler.type: 'hyperband' is not accepted"),
    ({"scheduler": {"type": "asha", "reduction_factor": 1}}, "reduction_factor: must be > 1"),
    ({"scheduler": {"type": "asha", "grace_period": 10, "max_t": 5}}, "max_t: must be >= grace_period"),
]


@pytest.mark.parametrize("change,expected", BAD_SWEEPS, ids=[e for _, e in BAD_SWEEPS])
def test_dry_run_rejects_bad_sweeps_in_one_line(tmp_path, capsys, change, expected):
    cfg = _fast_sft(tmp_path / "out")
    cfg["tune"] = _tune(**change)
    rc = pipeline_main(["--config", _write(tmp_path, cfg), "--tune", "--dry_run"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert expected in err
    assert err.count("\n") == 1 and err.startswith("fnsft: error: tune")
    assert not (tmp_path / "out").exists()  # nothing started


STAGE_SPLIT_ERRORS = [
    ({"search_space": {"stage_configs.my_stage.my_parameter": {"choice": ["a", "b"]}}},
     "comes from 'sft', which runs before the first swept stage 'my_stage'"),
    ({"metric": "my_stage/x", "stages": ["my_stage"]},
     "the search space changes stage 'sft', so each trial must run it"),
    ({"metric": "my_stage/x", "stages": []}, "tune.stages: empty"),
    ({"metric": "my_stage/x", "stages": ["rl"]}, "'rl' is not a stage that runs"),
    ({"metric": "my_stage/x", "search_space": {"torch_dtype": {"choice": ["float32"]}}, "stages": ["my_stage"]},
     "changes torch_dtype, which applies to every stage"),
]


@pytest.mark.parametrize("change,expected", STAGE_SPLIT_ERRORS, ids=[e for _, e in STAGE_SPLIT_ERRORS])
def test_dry_run_checks_which_stages_trials_run(tmp_path, capsys, change, expected):
    rc = pipeline_main(["--config", _write(tmp_path, _two_stage(tmp_path, _tune(**change))),
                        "--tune", "--dry_run"])
    err = capsys.readouterr().err
    assert rc == 2 and expected in err, err


def test_no_tune_section_is_a_config_error(tmp_path, capsys):
    rc = pipeline_main(["--config", _write(tmp_path, _fast_sft(tmp_path / "out")), "--tune", "--dry_run"])
    assert rc == 2 and "tune: missing" in capsys.readouterr().err


def test_sweep_plan_splits_shared_and_trial_stages(tmp_path):
    from fnsft.pipeline.plan import build_plan
    from fnsft.tune.sweep import validate_sweep

    tune = _tune(metric="my_stage/x", num_samples=2, search_space={
        "stage_configs.my_stage.my_parameter": {"grid_search": ["a", "b", "c"]},
        "stage_configs.my_stage.seed": {"randint": [0, 100]}})
    sweep = validate_sweep(build_plan(data=_two_stage(tmp_path, tune)))
    assert sweep.shared_stages == ["sft"] and sweep.trial_stages == ["my_stage"]
    assert sweep.num_trials == 6  # 3 grid values x 2 samples
    text = sweep.describe()
    assert "shared stages: sft" in text and "stage_configs.my_stage.my_parameter: grid_search" in text

    # A pipeline-wide key makes every stage a trial stage.
    tune["search_space"]["torch_dtype"] = {"choice": ["float32", "auto"]}
    sweep = validate_sweep(build_plan(data=_two_stage(tmp_path, tune)))
    assert sweep.shared_stages == [] and sweep.trial_stages == ["sft", "my_stage"]


def test_shipped_sweep_config_dry_runs_without_ray():
    r = run_cli("--config", "configs/tune_sft_lr.yaml", "--tune", "--dry_run", cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "tune: search space OK" in r.stdout and "RAY_IMPORTED=False" in r.stdout
    with open(os.path.join(REPO, "configs", "tune_sft_lr.yaml")) as f:
        assert "fnsft-pipeline --config configs/tune_sft_lr.yaml --tune" in f.read()


def test_results_rank_table_and_error_lines():
    from fnsft.tune.results import TrialRow, _one_line, best_row, format_table, rank
    from fnsft.tune.space import SearchParam, Sweep, SweepConfig

    params = [SearchParam("stage_configs.sft.learning_rate", "loguniform", [1e-4, 1e-2])]
    sweep = Sweep(SweepConfig(metric="sft/eval_loss", search_space={}), params, [], ["sft"])
    rows = rank([
        TrialRow("a", "completed", {params[0].path: 1e-3}, {"sft/eval_loss": 2.0}),
        TrialRow("b", "error", {params[0].path: 5e-3}, {}, error="StageError: boom"),
        TrialRow("c", "stopped early", {params[0].path: 1e-4}, {"sft/eval_loss": 1.0}),
        TrialRow("d", "completed", {params[0].path: 2e-3}, {"sft/eval_loss": 1.5}),
    ], "sft/eval_loss", "min")
    assert [r.trial_id for r in rows] == ["d", "a", "c", "b"]
    assert best_row(rows, "sft/eval_loss").trial_id == "d"
    table = format_table(rows, sweep).splitlines()
    assert table[1].split() == ["rank", "trial", "status", "learning_rate", "sft/eval_loss", "seconds"]
    assert table[3].split()[:5] == ["1", "d", "completed", "0.002", "1.5"]
    assert "trial b failed: StageError: boom" in table[-1]

    wrapped = RuntimeError("ray::ImplicitFunc.train() (pid=1)\n  File \"x.py\", line 3\n"
                           "fnsft.errors.StageError: stage sft: Ray Train job failed: OOM\n\n")
    assert _one_line(wrapped) == "StageError: stage sft: Ray Train job failed: OOM"


# --- real sweeps on the session's local Ray --------------------------------------------------
@pytest.mark.slow
def test_sft_learning_rate_sweep_with_asha_then_best_config_runs(tmp_path, ray_session, capsys):
    out = tmp_path / "run"
    cfg = _fast_sft(out, save_steps=10, eval_steps=10)
    cfg["tune"] = _tune(num_samples=3, seed=0, scheduler={"type": "asha", "grace_period": 1,
                                                          "reduction_factor": 2})
    from ray.util import placement_group_table

    groups_before = set(placement_group_table())
    rc = pipeline_main(["--config", _write(tmp_path, cfg), "--tune"])
    console = capsys.readouterr().out
    assert rc == 0

    # The results table: CSV (best first) and the console version.
    tune_dir = out / "tune"
    rows = _read_csv(tune_dir / "results.csv")
    assert len(rows) == 3
    lrs = [float(r["stage_configs.sft.learning_rate"]) for r in rows]
    assert all(1e-4 <= lr <= 1e-2 for lr in lrs) and len(set(lrs)) == 3
    assert {r["status"] for r in rows} <= {"completed", "stopped early"}
    assert rows[0]["status"] == "completed"
    done = [r for r in rows if r["status"] == "completed"]
    assert [float(r["sft/eval_loss"]) for r in done] == sorted(float(r["sft/eval_loss"]) for r in done)
    assert "Sweep results: sft/eval_loss (min), 3 trial(s)" in console
    for r in rows:
        assert r["trial_id"] in console and os.path.isdir(r["output_dir"])

    # Each trial is its own pipeline run in tune/trial_<id>, next to Tune's own files.
    best = rows[0]
    trial = tune_dir / f"trial_{best['trial_id']}"
    summary = json.loads((trial / "pipeline_summary.json").read_text())
    assert summary["stages"]["sft"]["status"] == "completed"
    assert summary["stages"]["sft"]["metrics"]["eval_loss"] == pytest.approx(float(best["sft/eval_loss"]))
    assert (trial / "01_sft" / "model" / "config.json").is_file()
    # The Train job's reports reached Tune while it ran (a checkpoint every 10 steps + the end).
    with open(trial / "progress.csv") as f:
        assert len(f.read().strip().splitlines()) - 1 >= 3
    # Trials ASHA stopped early made fewer reports, and left no CPUs reserved behind them.
    for r in rows:
        if r["status"] == "stopped early":
            with open(tune_dir / f"trial_{r['trial_id']}" / "progress.csv") as f:
                assert len(f.read().strip().splitlines()) - 1 < 3
    assert [pg for pg_id, pg in placement_group_table().items()
            if pg_id not in groups_before and pg["state"] != "REMOVED"] == []

    # best_config.yaml: the original config, the best value set, tune: removed, a new output_dir.
    best_path = tune_dir / "best_config.yaml"
    text = best_path.read_text()
    assert f"fnsft-pipeline --config {best_path}" in text
    best_cfg = yaml.safe_load(text)
    assert "tune" not in best_cfg
    assert best_cfg["stage_configs"]["sft"]["learning_rate"] == pytest.approx(lrs[0])
    assert best_cfg["output_dir"] == str(tune_dir / "best")
    assert {k: v for k, v in best_cfg["stage_configs"]["sft"].items() if k != "learning_rate"} == \
        {k: v for k, v in cfg["stage_configs"]["sft"].items() if k != "learning_rate"}

    # ... and it runs as is, reproducing the best trial.
    rc = pipeline_main(["--config", str(best_path)])
    assert rc == 0
    rerun = json.loads((tune_dir / "best" / "pipeline_summary.json").read_text())
    assert rerun["stages"]["sft"]["status"] == "completed"
    assert rerun["stages"]["sft"]["metrics"]["eval_loss"] == pytest.approx(float(best["sft/eval_loss"]), rel=0.02)


@pytest.mark.slow
@pytest.mark.long  # CI: the ASHA sweep above (the same trial runner, on the first stage)
def test_sweep_of_a_later_stage_reuses_the_finished_sft(tmp_path, ray_session, capsys):
    out = tmp_path / "run"
    plugin = tmp_path / "score_stage.py"
    plugin.write_text(SCORE_STAGE)
    cfg = _fast_sft(out)
    cfg["plugins"] = [str(plugin)]
    cfg["stages"] = ["sft", "score"]
    cfg["tune"] = {"metric": "score/value", "mode": "max", "max_concurrent_trials": 2,
                   "search_space": {"stage_configs.score.target": {"grid_search": [1.0, 2.0, 3.5]}}}
    path = _write(tmp_path, cfg)

    # SFT ran before (an ordinary run of the same config's first stage) ...
    assert pipeline_main(["--config", path, "--stages", "sft"]) == 0
    manifest = json.loads((out / ".fnsft_manifest.json").read_text())
    sft_finished = manifest["stages"]["sft"]["finished"]
    sft_model = os.path.join(out, "01_sft", "model")
    sft_sha = _sha_of_dir(sft_model)
    capsys.readouterr()

    # ... so the sweep does not train it again: every trial starts from its saved model.
    assert pipeline_main(["--config", path, "--tune"]) == 0
    console = capsys.readouterr().out
    manifest = json.loads((out / ".fnsft_manifest.json").read_text())
    assert manifest["stages"]["sft"]["finished"] == sft_finished
    rows = _read_csv(out / "tune" / "results.csv")
    assert [r["status"] for r in rows] == ["completed"] * 3
    assert [float(r["stage_configs.score.target"]) for r in rows] == [2.0, 1.0, 3.5]  # best first
    assert "shared stages: sft" in (out / "tune" / "pipeline_training.log").read_text()
    for r in rows:
        trial = out / "tune" / f"trial_{r['trial_id']}"
        summary = json.loads((trial / "pipeline_summary.json").read_text())
        assert summary["stages"]["sft"]["status"] == "skipped (completed)"
        assert not (trial / "01_sft").exists()
        score = summary["stages"]["score"]
        assert score["status"] == "completed"
        assert score["metrics"]["incoming_from"] == "sft"
        assert score["metrics"]["weights_sha256"] == sft_sha
    assert "Best trial" in console

    best = yaml.safe_load((out / "tune" / "best_config.yaml").read_text())
    assert best["stage_configs"]["score"]["target"] == 2.0
    assert best["plugins"] == [str(plugin)] and "tune" not in best

    # A metric no stage reports: the trials fail, the sweep says why in one line.
    rc = pipeline_main(["--config", path, "--tune", "--set", "tune.metric=score/valu",
                        "--set", 'tune.search_space={"stage_configs.score.target": {"choice": [1.0]}}'])
    err = capsys.readouterr().err.strip().splitlines()[-1]  # (the trial's own output comes first)
    assert rc == 1 and err.startswith("fnsft: error: tune: no trial finished (1 of 1 failed); "
                                      "first error: StageError: tune.metric: stage score reported no "
                                      "'valu'; it reported: value; see "), err
    (row,) = _read_csv(out / "tune" / "results.csv")
    assert row["status"] == "error" and "reported no 'valu'" in row["error"]
