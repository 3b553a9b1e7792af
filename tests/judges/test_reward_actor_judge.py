"""The judge as a reward term of the reward role (plain class, no Ray): masking and preference pairs."""

import json
import os

from fnsft.actors.reward import RewardActor
from fnsft.judges import JudgeSettings, build_judge
from fnsft.rl.rewards import parse_reward_specs

FNS = os.path.join(os.path.dirname(__file__), "judge_fns.py")


def test_judge_term_masks_failures_and_sums_with_rules(tmp_path):
    judge = build_judge(JudgeSettings(type="function", function=f"{FNS}:letter_share", score_range=[0, 1]))
    actor = RewardActor(parse_reward_specs([{"type": "regex", "pattern": "a", "weight": 0.5}], "r"),
                        judge=judge, judge_weight=2.0)
    out = actor.score(["q"] * 3, ["aaaa", "ab", "xyz"])
    assert out["components"]["judge"] == [1.0, 0.5, 0.0] and out["masked"] == [False] * 3
    assert out["rewards"] == [0.5 + 2.0, 0.5 + 1.0, 0.0]
    assert out["metrics"]["judge/calls"] == 3.0
    assert actor.score(["q"], ["aaaa"])["metrics"]["judge/calls"] == 0.0  # per call: the cache answered

    broken = build_judge(JudgeSettings(type="function", function=f"{FNS}:garbage", score_range=[0, 1]))
    actor = RewardActor([], judge=broken)
    out = actor.score(["q", "q"], ["a", "b"])
    assert out["masked"] == [True, True] and out["metrics"]["judge/masked_share"] == 1.0


def test_preference_pairs_are_written_for_training_groups_only(tmp_path):
    judge = build_judge(JudgeSettings(type="function", function=f"{FNS}:letter_share", score_range=[0, 1]))
    path = str(tmp_path / "pairs.jsonl")
    actor = RewardActor([], judge=judge, pairs_path=path, pairs_group=2)
    actor.score(["p1", "p1", "p2", "p2"], ["aa", "bb", "cc", "cc"])  # p2 ties: no pair
    actor.score(["e1", "e2"], ["aa", "bb"])  # a held-out evaluation (distinct prompts): no pairs
    with open(path) as f:
        rows = [json.loads(line) for line in f]
    assert rows == [{"prompt": "p1", "chosen": "aa", "rejected": "bb", "score_chosen": 1.0, "score_rejected": 0.0}]
