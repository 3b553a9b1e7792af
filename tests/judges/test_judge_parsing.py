"""Reading verdicts: first A/B, first number in range, yes/no, log-probs; everything else masked."""

import math

import pytest

from fnsft.judges.parsing import from_function_value, from_option_probs, from_text, parse_reply

R = [1, 10]


@pytest.mark.parametrize("text,want", [
    ("A", 1.0), ("B", 0.0), ("[[B]] is better", 0.0), ("Answer: A.", 1.0), ("(2)", 0.0), ("1", 1.0),
    ("Both are fine", None), ("", None), (None, None), ("AB", None),
])
def test_pairwise_text(text, want):
    assert from_text("pairwise", text, R) == want


@pytest.mark.parametrize("text,want", [
    ("7", 7.0), ("Score: 8/10", 8.0), ("10", 10.0), ("12", None), ("0", None), ("no idea", None), ("3.5", 3.5),
])
def test_pointwise_text_first_number_in_range(text, want):
    assert from_text("pointwise", text, R) == want


@pytest.mark.parametrize("text,want", [("Yes.", 1.0), ("no", 0.0), ("NO, because", 0.0), ("maybe", None), ("yesterday", None)])
def test_binary_text(text, want):
    assert from_text("binary", text, R) == want


def test_logprobs_give_probabilities():
    lps = [{"A": math.log(0.6), "B": math.log(0.2), "C": math.log(0.2)}]
    assert parse_reply("pairwise", "A", R, lps) == pytest.approx(0.75)
    # the first token is not an answer; the second is
    lps = [{"The": 0.0}, {" B": math.log(0.5), " A": math.log(0.5)}]
    assert parse_reply("pairwise", "The B", R, lps) == pytest.approx(0.5)
    ev = parse_reply("pointwise", "3", [1, 5], [{"3": math.log(0.5), "5": math.log(0.5), "x": -1.0}])
    assert ev == pytest.approx(4.0)
    assert parse_reply("binary", "yes", R, [{"Yes": math.log(0.3), "No": math.log(0.1)}]) == pytest.approx(0.75)
    # log-probs with no answer in them: the text decides
    assert parse_reply("pairwise", "B", R, [{"hmm": 0.0}]) == 0.0


def test_option_probs_and_function_values():
    assert from_option_probs("pairwise", {"A": 0.2, "B": 0.2}) == pytest.approx(0.5)
    assert from_option_probs("pointwise", {"1": 1.0, "3": 1.0}) == pytest.approx(2.0)
    assert from_option_probs("pairwise", {"A": 0.0, "B": 0.0}) is None  # never 0
    assert from_function_value("pairwise", "A", R) == 1.0
    assert from_function_value("pairwise", 1.5, R) is None
    assert from_function_value("pointwise", 11, R) is None
    assert from_function_value("pointwise", float("nan"), R) is None
    assert from_function_value("binary", True, R) == 1.0
