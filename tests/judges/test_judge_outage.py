"""A judge outage fails the RLAIF stage in one line instead of training on nothing: the masked
share of a batch (and of the stage) is held to ``judge.max_masked_share``; empty replies are
never cached as verdicts, so a rerun after the outage asks again."""

import os

import pytest

from fnsft.errors import ConfigError, StageError
from fnsft.judges import JudgeSettings, build_judge, check_judge_settings
from fnsft.judges.reward_term import JudgeTerm

FNS = os.path.join(os.path.dirname(__file__), "judge_fns.py")


def api_judge(fake, tmp_path, **kw):
    s = JudgeSettings(type="api", score_range=[1, 9], top_logprobs=0, **kw,
                      api={"model": "judge-model", "base_url": fake.base_url, "max_retries": 0, "timeout_s": 10})
    return build_judge(s, cache_path=str(tmp_path / "judge_cache.jsonl"), key="stage_configs.rlaif.judge")


def test_an_endpoint_outage_fails_the_batch_in_one_line_naming_share_threshold_and_errors(fake_openai, tmp_path):
    fake_openai.answer = lambda body: "7"
    fake_openai.push("500", "500", "garbage")  # 3 of 4 judgements fail
    term = JudgeTerm(api_judge(fake_openai, tmp_path))
    with pytest.raises(StageError) as err:
        term.score(["q"] * 4, ["r0", "r1", "r2", "r3"], {})
    msg = str(err.value)
    assert msg.startswith("stage_configs.rlaif.judge.max_masked_share: 3 of 4 judgements masked (75% > 50%)")
    assert "HTTP 5xx: 2" in msg and "unreadable answer: 1" in msg and "\n" not in msg


def test_a_share_under_the_threshold_trains_on(fake_openai, tmp_path):
    fake_openai.answer = lambda body: "7"
    fake_openai.push("500")
    out = JudgeTerm(api_judge(fake_openai, tmp_path, max_masked_share=0.5)).score(["q"] * 4, ["a", "b", "c", "d"], {})
    assert sum(out.failed) == 1  # whichever request arrived first (the client's threads race)


def test_parse_failures_count_too_and_one_disables_the_check(tmp_path):
    s = JudgeSettings(type="function", function=f"{FNS}:garbage", score_range=[0, 1])
    with pytest.raises(StageError, match=r"judge.max_masked_share: 2 of 2 judgements masked .*unparsed replies: 2"):
        JudgeTerm(build_judge(s)).score(["q", "q"], ["a", "b"], {})
    s.max_masked_share = 1.0
    assert JudgeTerm(build_judge(s)).score(["q", "q"], ["a", "b"], {}).failed == [True, True]


def test_empty_replies_are_not_cached_as_verdicts(fake_openai, tmp_path):
    fake_openai.answer = lambda body: ""  # an endpoint in trouble: 200 and nothing
    judge = api_judge(fake_openai, tmp_path, max_masked_share=1.0)
    assert judge.pointwise(["q"], ["r"]) == [None]
    fake_openai.answer = lambda body: "7"
    again = api_judge(fake_openai, tmp_path)
    assert again.pointwise(["q"], ["r"]) == [0.75] and fake_openai.count == 2


@pytest.mark.parametrize("bad", [0.0, 1.5, -0.1])
def test_max_masked_share_is_checked_with_the_settings(bad):
    with pytest.raises(ConfigError, match=r"^stage_configs.rlaif.judge.max_masked_share: .* in \(0, 1\]"):
        check_judge_settings(JudgeSettings(type="function", function=f"{FNS}:garbage", max_masked_share=bad),
                             "stage_configs.rlaif.judge")


@pytest.mark.slow
def test_an_rlaif_stage_whose_judge_is_down_fails_in_one_line_and_is_not_recorded_done(ray_session, tmp_path):
    import json

    from fnsft.pipeline.driver import Pipeline

    rlaif_config = _load("test_rlaif_stage").rlaif_config
    cfg = rlaif_config(tmp_path / "run", num_iterations=2, eval_dataset_path=None, resources={"max_failures": 0},
                       judge={"type": "function", "function": f"{FNS}:broken", "score_range": [0, 1]})
    with pytest.raises(StageError) as e:
        Pipeline.from_dict(cfg).run()
    msg = str(e.value)
    assert msg.startswith("stage_configs.rlaif.judge.max_masked_share: ") and "other failures: " in msg, msg
    assert "\n" not in msg
    with open(tmp_path / "run" / "pipeline_summary.json") as f:
        assert json.load(f)["stages"]["rlaif"]["status"] == "failed"  # a rerun runs it again


def _load(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, os.path.join(os.path.dirname(__file__), f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
