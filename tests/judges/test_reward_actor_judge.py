"""The judge as a reward term of the reward role (plain class, no Ray): masking, books, preference pairs."""

import json
import os

from fnsft.actors.reward import RewardActor
from fnsft.actors.rollout import merge_scores
from fnsft.judges import JudgeSettings, build_judge
from fnsft.judges.reward_term import JudgeTerm
from fnsft.rl.rewards import parse_reward_specs

FNS = os.path.join(os.path.dirname(__file__), "judge_fns.py")


def _judge(fn="letter_share", **kw):
    return build_judge(JudgeSettings(type="function", function=f"{FNS}:{fn}", score_range=[0, 1], **kw))


def test_judge_term_masks_failures_and_sums_with_rules(tmp_path):
    actor = RewardActor(parse_reward_specs([{"type": "regex", "pattern": "a", "weight": 0.5}], "r"),
                        terms=[JudgeTerm(_judge(), weight=2.0)])
    out = actor.score(["q"] * 3, ["aaaa", "ab", "xyz"])
    assert out["components"]["judge"] == [1.0, 0.5, 0.0] and out["masked"] == [False] * 3
    assert out["rewards"] == [0.5 + 2.0, 0.5 + 1.0, 0.0]
    assert out["metrics"]["judge/calls"] == 3.0
    assert actor.score(["q"], ["aaaa"])["metrics"]["judge/calls"] == 0.0  # per call: the cache answered

    actor = RewardActor([], terms=[JudgeTerm(_judge("garbage", max_masked_share=1.0))])  # 1: never stop
    out = actor.score(["q", "q"], ["a", "b"])
    assert out["masked"] == [True, True] and out["metrics"]["judge/masked_share"] == 1.0


def test_masked_rows_get_the_mean_of_the_judged_ones(tmp_path):
    """A masked verdict is a placeholder (the mean of the rows the judge scored), flagged in ``masked``."""
    fn = tmp_path / "half.py"
    fn.write_text("def judge(prompt, response):\n    return 'no idea' if response == 'x' else float(len(response) > 1)\n")
    judge = build_judge(JudgeSettings(type="function", function=f"{fn}:judge", score_range=[0, 1]))
    out = RewardActor([], terms=[JudgeTerm(judge)]).score(["q"] * 3, ["aa", "x", "b"])
    assert out["masked"] == [False, True, False] and out["components"]["judge"] == [1.0, 0.5, 0.0]
    assert out["metrics"]["judge/masked_share"] == 1 / 3


def test_books_of_shares_add_up_to_the_whole_batch_and_to_the_totals():
    """Two reward replicas scoring halves of a batch report, joined, what one actor reports for all of it;
    every actor's running totals are its batches' books added up."""
    prompts, texts = ["q"] * 4, ["aa", "ab", "I", "bb"]
    whole = RewardActor([], terms=[JudgeTerm(_judge())]).score(prompts, texts)
    a, b = RewardActor([], terms=[JudgeTerm(_judge())]), RewardActor([], terms=[JudgeTerm(_judge())])
    joined = merge_scores([a.score(prompts[:1], texts[:1]), b.score(prompts[1:], texts[1:])])
    assert joined["rewards"] == whole["rewards"] and joined["masked"] == whole["masked"]
    timeless = lambda m: {k: v for k, v in m.items() if k != "judge/latency_s"}  # noqa: E731
    assert timeless(joined["metrics"]) == timeless(whole["metrics"]) and joined["metrics"]["judge/judgements"] == 4.0
    b.score(["q"], ["zz"])
    totals = b.term_totals()["judge"]
    assert totals["judgements"] == 4 and totals.metrics("judge")["judge/judgements"] == 4.0


def test_preference_pairs_are_written_for_training_groups_only(tmp_path):
    path = str(tmp_path / "pairs.jsonl")
    actor = RewardActor([], terms=[JudgeTerm(_judge())], pairs_path=path, pairs_group=2)
    actor.score(["p1", "p1", "p2", "p2"], ["aa", "bb", "cc", "cc"])  # p2 ties: no pair
    actor.score(["e1", "e2"], ["aa", "bb"])  # a held-out evaluation (distinct prompts): no pairs
    with open(path) as f:
        rows = [json.loads(line) for line in f]
    assert rows == [{"prompt": "p1", "chosen": "aa", "rejected": "bb", "score_chosen": 1.0, "score_rejected": 0.0}]


def test_judges_given_one_set_of_books_share_the_budget():
    """RLAIF mode reward_model: the judge that labels and the one that evaluates spend one budget."""
    import pytest

    from fnsft.judges.base import JudgeBudgetExhausted

    settings = JudgeSettings(type="function", function=f"{FNS}:letter_share", score_range=[0, 1], max_judge_calls=3)
    first = build_judge(settings)
    first.pointwise(["q"] * 2, ["a", "b"])
    second = build_judge(settings, books=first.books)
    with pytest.raises(JudgeBudgetExhausted):
        second.pointwise(["q"] * 2, ["c", "d"])
    assert first.counters()["calls"] == 3 and second.stats() == first.stats()
