"""reasoning-gym as a dataset source with its own scorer, the tool-shaping reward, a shipped
config with an environment validated as a plan, and the report's transcripts section (no Ray)."""

import json
import os

import pytest

from fnsft.data.files import load_rows, read_first_rows
from fnsft.data.procedural import extract_answer, reasoning_gym_score
from fnsft.envs.rewards import tool_success
from fnsft.errors import ConfigError
from fnsft.pipeline.plan import build_plan
from fnsft.report.collect import collect
from fnsft.report.html import render
from fnsft.testing import EXAMPLES, TINY

SPEC = "reasoning_gym:basic_arithmetic?size=12&seed=7&max_terms=3"
FIXTURES = os.path.join(os.path.dirname(__file__), "env_fixtures.py")


def test_reasoning_gym_rows_are_seeded_and_scored_by_their_task():
    rows = read_first_rows(SPEC, 4)
    assert len(rows) == 4 and set(rows[0]) == {"prompt", "answer", "reasoning_gym"}
    assert load_rows(SPEC).to_list()[:4] == rows  # same seed, same rows, whichever reader
    assert read_first_rows(SPEC.replace("seed=7", "seed=8"), 4) != rows
    cells = [r["reasoning_gym"] for r in rows]
    right = [f"Thinking...\n<answer>{r['answer']}</answer>" for r in rows]
    assert reasoning_gym_score(None, right, cells) == [1.0] * 4
    assert reasoning_gym_score(None, ["I don't know"] * 4, cells) == [0.0] * 4
    assert extract_answer(f"so\n{rows[0]['answer']}\n") == rows[0]["answer"]
    for bad, expect in (("reasoning_gym:no_such_task", "cannot make 'no_such_task'"),
                        ("reasoning_gym:basic_arithmetic?size=0", "write reasoning_gym:<task>")):
        with pytest.raises(ConfigError, match=expect):
            read_first_rows(bad, 2)


def test_stage_plans_with_reasoning_gym_and_an_environment(tmp_path):
    cfg = {"model_name_or_path": TINY, "output_dir": str(tmp_path), "stages": ["rl"],
           "stage_configs": {"rl": {
               "dataset_name_or_path": SPEC,
               "rewards": [{"type": "function", "function": "fnsft.data.procedural:reasoning_gym_score"}],
               "environment": {"tools": ["python_expression"], "max_turns": 2}}}}
    described = build_plan(data=cfg).stages[0].stage.describe_plan()
    assert described["environment"] == "one answer x1, max_turns=2, tools: python_expression"
    # an environment class makes rewards optional (its step rewards are the reward)
    cfg["stage_configs"]["rl"] = {"dataset_name_or_path": os.path.join(EXAMPLES, "arithmetic", "train.jsonl"),
                                  "environment": {"class": f"{FIXTURES}:SecondReplyEnv"}}
    build_plan(data=cfg)


def test_tool_success_reads_the_transcript():
    ok = [{"role": "user", "content": "q"}, {"role": "tool", "name": "f", "content": "5"}]
    failed = [{"role": "user", "content": "q"}, {"role": "tool", "name": "f", "content": "error: boom"}]
    assert tool_success(None, ["a", "b", "c"], [ok, failed, [{"role": "user", "content": "q"}]]) == [1.0, 0.0, 0.0]


def test_report_shows_sampled_episodes(tmp_path):
    stage = tmp_path / "01_rl"
    (stage / "transcripts").mkdir(parents=True)
    episode = {"messages": [{"role": "user", "content": "What is 2 + 3?"},
                            {"role": "assistant", "content": "<tool_call>{}</tool_call>"},
                            {"role": "tool", "name": "python_expression", "content": "5"},
                            {"role": "assistant", "content": "5"}],
               "reward": 1.0, "environment_reward": 0.0, "turns": 2, "failure": None}
    (stage / "transcripts" / "iteration-0001.json").write_text(json.dumps([episode]))
    (stage / "transcripts" / "iteration-0020.json").write_text(json.dumps([{**episode, "failure": "timeout"}]))
    (tmp_path / "pipeline_summary.json").write_text(json.dumps(
        {"status": "completed", "stage_order": ["rl"], "stages": {"rl": {"status": "completed",
                                                                        "output_dir": str(stage)}}}))
    run = collect(str(tmp_path))
    assert list(run.stages[0].transcripts) == ["iteration-0001", "iteration-0020"]
    page = render(run)
    assert "Sampled episodes" in page and "Episodes of iteration 1 (1)" in page and "iteration 20" in page
    assert "python_expression" in page and "&lt;tool_call&gt;" in page and "failed: timeout" in page
