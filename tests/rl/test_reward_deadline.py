"""Reward terms run with a time limit per batch (``rl.rewards[].timeout_s``): a term that runs
past it fails the rows it did not score (the failure mask), counts it in its books, and the
stage goes on — unless no row of the batch could be scored: then it stops (nothing to train on). No Ray: the reward actor is called in-process, as the Ray actor runs it."""

import time

import pytest

from fnsft.actors.reward import RewardActor, spec_term
from fnsft.errors import ConfigError, StageError
from fnsft.rl.reward_terms import check_some_scored
from fnsft.rl.rewards import parse_reward_specs

# (a+)+$ against a run of a's ending in b backtracks 2^n ways in Python's re (which cannot be
# interrupted in its thread): 30 a's take minutes.
CATASTROPHIC = "a" * 30 + "b"


def test_catastrophic_regex_fails_the_rows_it_did_not_score_and_the_next_batch_runs():
    spec, = parse_reward_specs([{"type": "regex", "pattern": "(a+)+$", "timeout_s": 1.0}], "rl.rewards")
    term = spec_term(spec)
    t0 = time.monotonic()
    got = term.score(["p"] * 4, ["aa", "ok", CATASTROPHIC, "aaa"], {})
    assert time.monotonic() - t0 < 5.0
    assert got.failed == [False, False, True, True]  # scored before the deadline, the rest failed
    assert got.scores[:2] == [1.0, 0.0]
    assert got.stats == {"timeouts": 1, "timed_out_rows": 2}
    again = term.score(["p"], ["aaa"], {})  # a fresh scorer: the hung one is gone
    assert again.scores == [1.0] and again.failed == [False] and again.stats == {}


def test_hanging_reward_function_masks_its_rows_in_the_reward_actor(tmp_path):
    f = tmp_path / "slow.py"
    f.write_text("import time\n\ndef reward(prompts, completions, **kw):\n"
                 "    if any('hang' in c for c in completions):\n        time.sleep(3600)\n"
                 "    return [float(len(c)) for c in completions]\n")
    specs = parse_reward_specs([{"type": "function", "function": str(f), "timeout_s": 0.5, "name": "slow"},
                                {"type": "regex", "pattern": "^a"}], "rl.rewards")
    actor = RewardActor(specs)
    t0 = time.monotonic()
    out = actor.score(["p"] * 2, ["a", "hang"])
    assert time.monotonic() - t0 < 5.0
    assert out["masked"] == [True, True]  # a batch function scores all rows or none
    assert out["components"]["regex"] == [1.0, 0.0]
    assert out["metrics"] == {"slow/timeouts": 1.0, "slow/timed_out_rows": 2.0}
    with pytest.raises(StageError, match=r"no completion of this batch could be scored \(2 of 2 masked; "
                                         r"slow/timeouts=1, slow/timed_out_rows=2\)"):
        check_some_scored(out["masked"], out["metrics"], "this batch")  # what the rollout checks
    out = actor.score(["p"], ["abc"])
    assert out["components"]["slow"] == [3.0] and out["masked"] == [False]
    check_some_scored(out["masked"], out["metrics"], "this batch")
    assert actor.term_totals()["slow"] == {"timeouts": 1, "timed_out_rows": 2}


def test_errors_inside_the_scorer_reach_the_caller_unchanged():
    spec, = parse_reward_specs([{"type": "exact_match", "column": "answer"}], "rl.rewards")
    with pytest.raises(ConfigError, match="no column 'answer'"):
        spec_term(spec).score(["p"], ["x"], {})


@pytest.mark.parametrize("value", [0, -1.0])
def test_timeout_must_be_positive(value):
    with pytest.raises(ConfigError, match=r"rl.rewards\[0\].timeout_s: must be > 0"):
        parse_reward_specs([{"type": "regex", "pattern": "a", "timeout_s": value}], "rl.rewards")
