"""An environment outage (every episode of a batch failed) stops the stage with one line instead
of training on a batch of zeros; one episode that ran is enough to go on (torch only, no Ray)."""

import pytest

from fnsft.actors.roles import Roles
from fnsft.envs.rollout import Episode, _score
from fnsft.envs.transcript import Transcript
from fnsft.errors import StageError


def _episode(i: int, failure):
    t = Transcript(messages=[{"role": "user", "content": "2+2?"}], prompt_ids=[5, 6, 7])
    if failure is None:
        t.add_reply([8, 9], "4")
    return Episode(key=f"e{i}", row={"prompt": "2+2?"}, actor=None, transcript=t, reward=1.0, failure=failure)


def _score_batch(failures):
    roles = Roles(generation=None, placement_group=None)  # no reward terms, no reference: the env's reward only
    return _score(roles, [_episode(i, f) for i, f in enumerate(failures)], pad_id=0, timings={},
                  reference_temperature=1.0, use_reference_actor=False, timeout_s=5.0)


def test_every_episode_failed_stops_the_stage():
    with pytest.raises(StageError, match=r"no completion of these 4 episodes could be scored.*episode_errors=4"):
        _score_batch(["error", "timeout", "error", "error"])


def test_one_episode_that_ran_keeps_the_batch_and_failed_ones_score_zero():
    rollout = _score_batch(["error", None, "timeout", "error"])
    assert list(rollout.arrays["scores"]) == [0.0, 1.0, 0.0, 0.0]
