import dataclasses

import pytest

from fnsft.errors import ConfigError
from fnsft.rl import ALGORITHMS, get_algorithm


def test_registry_covers_the_algorithms():
    # the five RL algorithms, online DPO (RLAIF's mode preference; any reward can rank), the GRPO family,
    # on-policy distillation
    assert set(ALGORITHMS) == {"ppo", "a2c", "trpo", "grpo", "rloo", "online_dpo", "dapo", "dr_grpo", "gspo",
                               "cispo", "reinforce_pp", "reinforce_pp_baseline", "on_policy_distill"}
    for name, spec in ALGORITHMS.items():
        assert spec.name == name
        assert not (spec.uses_critic and spec.needs_groups)
        assert spec.policy_update in {"clipped", "vanilla", "natural", "dpo"}
    assert get_algorithm("PPO").uses_critic
    assert not get_algorithm("grpo").uses_critic
    with pytest.raises(dataclasses.FrozenInstanceError):
        ALGORITHMS["ppo"].uses_critic = False


def test_unknown_algorithm_names_the_choices():
    with pytest.raises(ConfigError, match="grpo"):
        get_algorithm("dqn")
