"""Judge-labelled preference pairs (RLAIF mode reward_model's data): no Ray, function judges."""

import os

from fnsft.judges import JudgeSettings, build_judge
from fnsft.judges.pairs import label_pairs
from fnsft.stages.rlaif_reward_model import split_pairs

FNS = os.path.join(os.path.dirname(__file__), "judge_fns.py")


def test_pointwise_judge_pairs_best_with_worst_and_skips_masked_and_ties():
    judge = build_judge(JudgeSettings(type="function", function=f"{FNS}:letter_share", score_range=[0, 1]))
    prompts = ["p1"] * 3 + ["p2"] * 3
    pairs = label_pairs(judge, prompts, ["ab", "aaaa", "xyz", "b", "c", "d"], 3)  # p2: all score 0
    assert pairs == [{"prompt": "p1", "chosen": "aaaa", "rejected": "xyz", "score_chosen": 1.0, "score_rejected": 0.0}]
    garbage = build_judge(JudgeSettings(type="function", function=f"{FNS}:garbage", score_range=[0, 1]))
    assert label_pairs(garbage, ["p"] * 2, ["a", "b"], 2) == []  # masked: no pair, never a guess
    assert garbage.stats()["judge/masked_share"] == 1.0


def test_pairwise_judge_asks_both_orders_and_an_always_a_judge_labels_nothing():
    longer = build_judge(JudgeSettings(type="function", function=f"{FNS}:longer", kind="pairwise"))
    pairs = label_pairs(longer, ["p"] * 4, ["short", "much longer", "x", "x"], 4)  # (1st, 2nd), (3rd, 4th)
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("much longer", "short")]  # identical ones skipped
    assert longer.stats()["judge/calls"] == 2 and longer.stats()["judge/position_consistency"] == 1.0
    always_a = build_judge(JudgeSettings(type="function", function=f"{FNS}:always_a", kind="pairwise"))
    assert label_pairs(always_a, ["p"] * 2, ["one", "two"], 2) == []  # 0.5 after debiasing: a tie
    assert always_a.stats()["judge/position_consistency"] == 0.0


def test_held_back_pairs_share_no_prompt_with_training_pairs():
    pairs = [{"prompt": f"q{i % 10}", "chosen": str(i), "rejected": "-"} for i in range(30)]
    train, held = split_pairs(pairs, 0.2, seed=0)
    assert len(held) == 6 and len(train) == 24
    assert not {p["prompt"] for p in held} & {p["prompt"] for p in train}
