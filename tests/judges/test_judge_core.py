"""The Judge over a function backend: position debiasing, masking, cache, budget, principles."""

import os

import pytest

from fnsft.judges import JudgeSettings, build_judge
from fnsft.judges.base import JudgeBudgetExhausted

FNS = os.path.join(os.path.dirname(__file__), "judge_fns.py")


def judge(fn, kind="pointwise", tmp=None, **kw):
    s = JudgeSettings(type="function", kind=kind, function=f"{FNS}:{fn}", **kw)
    return build_judge(s, cache_path=str(tmp / "cache.jsonl") if tmp else None)


def test_always_a_judge_is_cancelled_by_both_orders():
    j = judge("always_a", "pairwise")
    prefs = j.pairwise(["q1", "q2", "q3"], ["x", "yy", "z"], ["y", "x", "zzz"])
    assert prefs == [0.5, 0.5, 0.5]
    st = j.stats()
    assert st["judge/position_consistency"] == 0.0
    assert st["judge/tie_share"] == 1.0
    assert st["judge/calls"] == 6  # both orders asked


def test_consistent_judge_and_other_debias_modes():
    j = judge("longer", "pairwise")
    assert j.pairwise(["q", "q"], ["long answer", "s"], ["s", "long answer"]) == [1.0, 0.0]
    assert j.stats()["judge/position_consistency"] == 1.0
    biased = judge("always_a", "pairwise", position_debias="none")
    assert biased.pairwise(["q"] * 4, list("abcd"), list("efgh")) == [1.0] * 4
    rnd = judge("always_a", "pairwise", position_debias="random")
    prefs = rnd.pairwise([f"q{i}" for i in range(40)], ["a"] * 40, ["b"] * 40)
    assert set(prefs) == {0.0, 1.0} and 10 < sum(prefs) < 30  # each order shown about half the time
    assert rnd.stats()["judge/calls"] == 40


def test_unparseable_and_failed_judgements_are_masked_never_zero(tmp_path):
    j = judge("garbage", tmp=tmp_path)
    assert j.pointwise(["q", "q"], ["a", "b"]) == [None, None]
    assert j.stats()["judge/masked_share"] == 1.0
    j = judge("broken", tmp=tmp_path)
    assert j.pointwise(["q"], ["a"]) == [None]
    assert j.stats()["judge/errors"] == 1
    # a failed call is not cached: the rerun asks again
    j2 = judge("broken", tmp=tmp_path)
    j2.pointwise(["q"], ["a"])
    assert j2.stats()["judge/calls"] == 1


def test_rerun_hits_the_cache_and_makes_no_call(tmp_path):
    j = judge("letter_share", tmp=tmp_path, score_range=[0, 1])
    first = j.pointwise(["q1", "q2"], ["aaab", "bbbb"])
    assert first == [0.75, 0.0]  # a real 0 stays 0: only masking is None
    again = judge("letter_share", tmp=tmp_path, score_range=[0, 1])
    assert again.pointwise(["q1", "q2"], ["aaab", "bbbb"]) == first
    st = again.stats()
    assert st["judge/calls"] == 0 and st["judge/cache_hits"] == 2
    # a different order of the same pair is a different judgement
    p = judge("longer", "pairwise", tmp=tmp_path, position_debias="none")
    p.pairwise(["q"], ["aa"], ["b"])
    p.pairwise(["q"], ["b"], ["aa"])
    assert p.stats()["judge/calls"] == 2


def test_budget_stops_loudly_and_keeps_what_was_judged(tmp_path):
    j = judge("letter_share", tmp=tmp_path, score_range=[0, 1], max_judge_calls=3)
    with pytest.raises(JudgeBudgetExhausted, match="max_judge_calls"):
        j.pointwise(["q"] * 5, ["a", "b", "c", "d", "e"])
    more = judge("letter_share", tmp=tmp_path, score_range=[0, 1], max_judge_calls=10)
    more.pointwise(["q"] * 5, ["a", "b", "c", "d", "e"])
    assert more.stats()["judge/cache_hits"] == 3 and more.stats()["judge/calls"] == 2


def test_pointwise_normalised_and_principles():
    j = judge("letter_share", score_range=[0, 1])
    assert j.pointwise(["q"], ["aa"], normalise=False) == [1.0]
    p = judge("with_principles", score_range=[0, 1], principles=["Be kind."], principle_sampling="all")
    assert p.pointwise(["q"], ["x"]) == [1.0]


def test_template_rendering_keeps_other_braces():
    from fnsft.judges.templates import render, shipped_template

    text = render('JSON {"a": 1} Q: {prompt} R: {response}', {"prompt": "hi", "response": "yo"})
    assert text == 'JSON {"a": 1} Q: hi R: yo'
    shipped = render(shipped_template("harmlessness", "pairwise"),
                     {"prompt": "p", "response_a": "x", "response_b": "y", "principles": "- be safe"})
    assert "[Answer A]\nx" in shipped and "- be safe" in shipped and "{" not in shipped
