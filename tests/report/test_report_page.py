"""The report page and model cards from a hand-written run folder (no Ray), checked in Chromium."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from browser import open_page, pixel_stddev  # noqa: E402
from fake_run import make_run  # noqa: E402

from fnsft.report import write_report  # noqa: E402
from fnsft.report.cli import report_main  # noqa: E402
from fnsft.report.collect import before_after, collect  # noqa: E402
from fnsft.report.curves import keep_metric, stage_series  # noqa: E402
from fnsft.report.svg import tick_labels  # noqa: E402


def test_counters_and_clocks_make_no_curves(tmp_path):
    out = make_run(tmp_path / "run")
    sft = stage_series(os.path.join(out, "01_sft"))
    assert set(sft) == {"loss", "eval_loss"}  # no total_flos, learning_rate, epoch, train_runtime
    rl = stage_series(os.path.join(out, "03_rl"))
    assert set(rl) == {"reward_mean", "eval/reward", "kl"}
    assert rl["eval/reward"] == [(0.0, 0.1), (8.0, 0.4)]
    for key in ("total_flos", "eval_num_tokens", "train_runtime", "time/generation_s", "eval_samples_per_second"):
        assert not keep_metric(key), key


def test_before_after_pairs():
    pairs = before_after({"before_eval_loss": 3.0, "eval_loss": 2.0, "reward_start": 0.1, "reward_end": 0.5,
                          "accuracy_before": 0.2, "accuracy_after": 0.3, "before_eval_runtime": 1, "eval_runtime": 2})
    assert pairs == [("eval_loss", 3.0, 2.0), ("reward", 0.1, 0.5), ("accuracy", 0.2, 0.3)]


def test_tick_labels_tell_close_ticks_apart():
    assert tick_labels([6.23, 6.235, 6.24]) == ["6.230", "6.235", "6.240"]
    assert tick_labels([0, 2.5e12, 5e12]) == ["0", "2.5e+12", "5e+12"]


def test_page_cards_and_warnings(tmp_path):
    out = make_run(tmp_path / "run")
    page = open(write_report(out)).read()
    assert "<script" not in page and "http://" not in page and "https://" not in page  # self-contained
    assert "total_flos" not in page
    assert "sk-should-not-show" not in page and "OPENAI_API_KEY" in page  # env var names only
    assert "Name a colour &lt;b&gt;bold&lt;/b&gt;" in page  # prompts are escaped
    run = collect(out)
    assert [s.strategy for s in run.stages] == ["deepspeed-zero2", "deepspeed-zero2", "torch"]
    assert run.stages[2].resources == {"num_workers": 1, "cpus_per_worker": 2}
    assert any("truncated_examples = 3 (number of examples cut" in w for w in run.warnings)
    assert any("2 rows were dropped" in w for w in run.warnings)
    card = open(os.path.join(out, "03_rl", "model", "README.md")).read()
    assert card.startswith("---\nbase_model: builtin:tiny-llama\nlibrary_name: transformers")
    assert "| rl | reward | 0.25 | 0.6 |" in card and "| sft | eval_loss | 3.1 | 2.2 |" in card
    assert "sk-should-not-show" not in card
    sft_card = open(os.path.join(out, "01_sft", "model", "README.md")).read()
    assert "| dpo |" not in sft_card  # a stage's card stops at that stage


def test_fnsft_report_cli(tmp_path, capsys):
    assert report_main([str(tmp_path)]) == 2
    assert "no pipeline_summary.json" in capsys.readouterr().err
    out = make_run(tmp_path / "run")
    os.remove(os.path.join(out, "report_answers.json"))  # an interrupted run may have none yet
    assert report_main([out]) == 0
    assert os.path.isfile(os.path.join(out, "report.html"))


def test_page_renders_in_chromium(tmp_path):
    out = make_run(tmp_path / "run")
    shot = str(tmp_path / "page.png")
    r = open_page(write_report(out), shot, height=1600)
    assert r["errors"] == [], r["errors"]
    assert pixel_stddev(shot) > 10  # not a blank page
    dom = r["dom"]
    assert "ANSWER-RL-7" in dom and "fish fish" in dom  # the side-by-side answers
    assert dom.count('class="panel"') >= 6 and "eval_rewards/accuracies" in dom
