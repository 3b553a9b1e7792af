"""Every wait of the RL loop on a role actor is bounded (``rl.role_timeout_s``): an actor that
never answers becomes one StageError line naming the role and the wait, never a hang. Real Ray
actors that sleep stand in for a stuck generation, reward or reference replica."""

import time

import numpy as np
import pytest

from fnsft.actors.group import ActorGroup, RoleResources
from fnsft.actors.roles import Roles
from fnsft.actors.rollout import collect_rollout
from fnsft.errors import ConfigError, StageError

pytestmark = pytest.mark.slow  # real Ray actors that wait out their deadlines


class Generation:
    def __init__(self, hang: bool = False, replica: int = 0):
        self.hang = hang

    def ready(self):
        return True

    def generate(self, prompts, sampling, seed):
        if self.hang:
            time.sleep(3600)
        n = len(prompts)
        return {"prompt_ids": [[1, 2]] * n, "completion_ids": [[3, 4]] * n, "texts": ["ab"] * n,
                "truncated": [False] * n}


class Scorer:
    def __init__(self, replica: int = 0):
        pass

    def ready(self):
        return True

    def score(self, prompts, completions, columns, completion_ids):
        time.sleep(3600)

    def logprobs(self, arrays, temperature):
        time.sleep(3600)


def group(cls, **kwargs):
    return ActorGroup(cls, RoleResources(num_replicas=1, num_cpus=0), kwargs=kwargs, name=cls.__name__)


@pytest.mark.parametrize("stuck", ["generation", "reward", "reference"])
def test_a_silent_role_actor_is_one_stage_error_naming_it(ray_session, stuck):
    roles = Roles(generation=group(Generation, hang=stuck == "generation"),
                  reward=group(Scorer) if stuck == "reward" else None,
                  reference=group(Scorer) if stuck == "reference" else None)
    try:
        roles.wait_ready(60)
        t0 = time.monotonic()
        with pytest.raises(StageError) as err:
            collect_rollout(roles, [{"prompt": "p"}], num_generations=2, sampling={}, pad_id=0,
                            timeout_s=1.0)
        assert time.monotonic() - t0 < 10
        line = str(err.value)
        assert "\n" not in line and f"{stuck} actors" in line and "role_timeout_s" in line
    finally:
        roles.shutdown()


def test_answers_in_time_are_unchanged(ray_session):
    roles = Roles(generation=group(Generation))
    try:
        r = collect_rollout(roles, [{"prompt": "p"}], num_generations=2, sampling={}, pad_id=0, timeout_s=30.0)
        assert r.completions == ["ab", "ab"] and np.all(r.arrays["scores"] == 0)
    finally:
        roles.shutdown()


def test_role_timeout_must_be_positive():
    from fnsft.config.bounds import check_bounds

    with pytest.raises(ConfigError, match=r"stage_configs.rl.role_timeout_s: must be > 0"):
        check_bounds("role_timeout_s", 0, "stage_configs.rl.role_timeout_s")
