"""Built-in rule rewards, loading user functions, the weighted sum, and the reward actor (no Ray)."""

import textwrap

import pytest

from fnsft.actors.reward import RewardActor
from fnsft.errors import ConfigError
from fnsft.rl.rewards import (
    call_reward,
    exact_match,
    extract_answer,
    length_penalty,
    load_function,
    parse_reward_specs,
    regex_match,
    target_chars,
    target_word,
    weighted_sum,
)


def test_exact_match_modes():
    comps = ["12", " 12. ", "The answer is 12", "13", ""]
    answers = ["12"] * 5
    assert exact_match(None, comps, answer=answers) == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert exact_match(None, comps, answer=answers, extract="last_number") == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert extract_answer("first\nsecond", "first_line") == "first"
    with pytest.raises(ConfigError, match="no column 'answer'"):
        exact_match(None, ["1"], solution=["1"])


def test_regex_length_and_dense_rewards():
    assert regex_match(None, ["42", "forty two", " 7 "], pattern=r"^\s*-?\d+\s*$") == [1.0, 0.0, 1.0]
    assert regex_match(None, ["a42b"], pattern=r"\d+", full_match=True) == [0.0]
    assert length_penalty(None, ["x"] * 2, target_length=4, completion_ids=[[1, 2], [1] * 8]) == [0.0, -1.0]
    assert length_penalty(None, ["abcdef"], target_length=3, unit="chars") == [-1.0]
    assert target_chars(None, ["the", "xyz", "t h e x", ""], chars="the") == [1.0, 0.0, 0.75, 0.0]
    assert target_word(None, ["cat cat dog", ""], word="cat") == [pytest.approx(2 / 3), 0.0]


def test_weighted_sum():
    assert weighted_sum({"a": [1.0, 0.0], "b": [0.5, 1.0]}, {"a": 2.0, "b": -1.0}) == [1.5, -1.0]


def test_load_function_module_and_file(tmp_path):
    assert load_function("fnsft.rl.rewards:target_chars") is target_chars
    f = tmp_path / "my_reward.py"
    f.write_text(textwrap.dedent("""
        def reward(prompts, completions, answer, **kw):
            return [float(c.strip() == a) for c, a in zip(completions, answer)]

        def strict(prompts, completions):
            return [len(c) for c in completions]
    """))
    fn = load_function(str(f))
    assert call_reward(fn, ["p", "p"], ["1", "2"], {"answer": ["1", "1"], "other": [0, 0]}) == [1.0, 0.0]
    strict = load_function(f"{f}:strict")
    # A function without **kwargs only gets the arguments it names.
    assert call_reward(strict, ["p"], ["abc"], {"answer": ["x"]}) == [3.0]


@pytest.mark.parametrize("ref, match", [
    ("no_such_module_xyz:fn", "module 'no_such_module_xyz' not found"),
    ("fnsft.rl.rewards:nope", "has no function 'nope'"),
    ("fnsft.rl.rewards", "names no function"),
    ("./missing_file.py:fn", "not found"),
])
def test_load_function_errors_name_the_key(ref, match):
    with pytest.raises(ConfigError, match=match) as e:
        parse_reward_specs([{"type": "function", "function": ref}], "stage_configs.rl.rewards")
    assert "stage_configs.rl.rewards[0].function" in str(e.value)


def test_parse_specs_errors():
    with pytest.raises(ConfigError, match="no reward given"):
        parse_reward_specs([], "k")
    with pytest.raises(ConfigError, match=r"k\[0\].type"):
        parse_reward_specs([{"weight": 1}], "k")
    with pytest.raises(ConfigError, match="did you mean 'pattern'"):
        parse_reward_specs([{"type": "regex", "patern": "x"}], "k")
    with pytest.raises(ConfigError, match="invalid regular expression"):
        parse_reward_specs([{"type": "regex", "pattern": "("}], "k")
    with pytest.raises(ConfigError, match="distinct name"):
        parse_reward_specs([{"type": "regex", "pattern": "a"}, {"type": "regex", "pattern": "b"}], "k")


def test_reward_actor_weighted_sum_with_columns(tmp_path):
    f = tmp_path / "r.py"
    f.write_text("def reward(prompts, completions, answer, **kw):\n    return [None, 1.0]\n")
    specs = parse_reward_specs([
        {"type": "exact_match", "column": "answer", "extract": "last_number", "weight": 1.0},
        {"type": "regex", "pattern": r"^\d+$", "weight": 0.5, "name": "format"},
        {"type": "function", "function": str(f), "weight": 2.0, "name": "custom"},
    ], "k")
    actor = RewardActor(specs)
    out = actor.score(["What is 1+1?", "What is 2+2?"], ["2", "five"], {"answer": ["2", "4"]}, [[5], [6, 7]])
    assert out["components"] == {"exact_match": [1.0, 0.0], "format": [1.0, 0.0], "custom": [0.0, 1.0]}
    assert out["rewards"] == [1.5, 2.0]


def test_reward_model_scores(tmp_path, tiny_model_dir):
    """A sequence-classification model directory works as a reward term."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    cfg = AutoConfig.from_pretrained(tiny_model_dir, num_labels=1)
    model = AutoModelForSequenceClassification.from_config(cfg)
    path = tmp_path / "rm"
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(path)
    specs = parse_reward_specs([{"type": "model", "path": str(path)}], "k")
    out = RewardActor(specs).score(["hi", "hello there"], ["yes", "no no"])
    assert len(out["rewards"]) == 2 and all(isinstance(x, float) for x in out["rewards"])
    with pytest.raises(ConfigError, match="not a model directory"):
        parse_reward_specs([{"type": "model", "path": str(tmp_path)}], "k")


def test_reward_actor_sums_any_term_and_masks_its_failures():
    """A term is anything with label, weight and score(): the actor sums it with the rules, fills a
    failed row with the mean of the others, masks it, and adds its books up across calls."""
    from fnsft.rl.reward_terms import TermScores, TermStats

    class Counting:
        label, weight = "length", 0.5

        def score(self, prompts, completions, columns):
            failed = [c == "" for c in completions]
            return TermScores([float(len(c)) for c in completions], failed, TermStats(calls=1, rows=len(completions)))

    actor = RewardActor(parse_reward_specs([{"type": "regex", "pattern": "a"}], "k"), terms=[Counting()])
    out = actor.score(["p"] * 3, ["a", "", "bbb"])
    assert out["components"] == {"regex": [1.0, 0.0, 0.0], "length": [1.0, 2.0, 3.0]}
    assert out["masked"] == [False, True, False] and out["rewards"] == [1.5, 1.0, 1.5]
    assert out["metrics"] == {"length/calls": 1.0, "length/rows": 3.0}
    actor.score(["p"], ["a"])
    assert actor.term_totals()["length"] == {"calls": 2, "rows": 4}
