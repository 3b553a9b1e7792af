"""The API judge against a local server in the OpenAI wire format (tests/openai_fake.py)."""

import math
import re

from fnsft.judges import JudgeSettings, build_judge


def _answer_a(body):
    return re.search(r"\[Answer A\]\n(.*?)\n", body["messages"][-1]["content"]).group(1)


def api_judge(fake, tmp_path, **kw):
    s = JudgeSettings(type="api", api={"model": "judge-model", "base_url": fake.base_url, "max_retries": 3,
                                       "timeout_s": 10}, **kw)
    return build_judge(s, cache_path=str(tmp_path / "judge_cache.jsonl"))


def test_pairwise_both_orders_masks_garbage_and_retries_429(fake_openai, tmp_path):
    def answer(body):
        first = _answer_a(body)
        if first.startswith("weird"):
            return "I would rather not say."  # no verdict: masked
        return "A" if first.startswith("good") else "B"

    fake_openai.answer = answer
    fake_openai.push("429")  # the first request is told to come back after Retry-After: 1
    judge = api_judge(fake_openai, tmp_path, kind="pairwise")
    prefs = judge.pairwise(["q1", "q2", "q3"], ["good one", "bad one", "weird one"], ["bad two", "good two", "weird two"])
    assert prefs == [1.0, 0.0, None]
    bodies = [r["body"]["messages"][-1]["content"] for r in fake_openai.requests]
    shown_first = {_answer_a({"messages": [{"content": b}]}) for b in bodies if "q1" in b}
    assert shown_first == {"bad two", "good one"}  # both orders asked
    st = judge.stats()
    assert st["judge/calls"] == 6 and st["judge/masked_share"] == 2 / 6
    assert st["judge/position_consistency"] == 1.0 and st["judge/tokens"] > 0
    assert fake_openai.count == 7  # 6 judgements + the retried 429
    # a rerun asks nothing: every judgement (the unparseable ones too) is cached
    again = api_judge(fake_openai, tmp_path, kind="pairwise")
    assert again.pairwise(["q1", "q2", "q3"], ["good one", "bad one", "weird one"],
                          ["bad two", "good two", "weird two"]) == prefs
    assert again.stats()["judge/calls"] == 0 and fake_openai.count == 7


def test_logprobs_give_expected_scores_and_failures_are_masked(fake_openai, tmp_path):
    fake_openai.answer = lambda body: {"text": "7", "top_logprobs": [{"7": math.log(0.5), "9": math.log(0.5)}]}
    judge = api_judge(fake_openai, tmp_path, score_range=[1, 9])
    assert judge.pointwise(["q"], ["r"], normalise=False) == [8.0]  # Σ i·P(i)
    assert fake_openai.requests[0]["body"]["logprobs"] is True
    fake_openai.push("500", "500", "500", "500")  # more failures than retries: masked, not cached
    judge2 = api_judge(fake_openai, tmp_path, score_range=[1, 9])
    assert judge2.pointwise(["other"], ["r"]) == [None]
    assert judge2.stats()["judge/errors"] == 1
    judge3 = api_judge(fake_openai, tmp_path, score_range=[1, 9])
    assert judge3.pointwise(["other"], ["r"], normalise=False) == [8.0]  # asked again on the rerun
