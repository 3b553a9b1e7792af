"""TextArena's games through fnsft's environment interface (fnsft.envs.textarena), without Ray:
the adapter loads and passes the pre-Ray checks, a bisection player wins Guess The Number through
the environment actor, the model sees only what is new each turn, a seed fixes the game, and an
invalid move ends the episode with TextArena's loss reward."""

import re

from fnsft.actors.environment import EnvironmentActor
from fnsft.config.parse import parse_dataclass
from fnsft.envs.checks import check_environment
from fnsft.envs.settings import EnvironmentSettings
from fnsft.envs.wrappers import build_spec

GAME = {"class": "fnsft.envs.textarena:TextArenaEnv", "kwargs": {"env_id": "GuessTheNumber-v0"}, "max_turns": 10}


def actor() -> EnvironmentActor:
    s = parse_dataclass(EnvironmentSettings, dict(GAME), "rl.environment")
    check_environment(s, "rl.environment")
    return EnvironmentActor(build_spec(s, "rl.environment").factory)


def play(env: EnvironmentActor, key: str, seed: int) -> tuple[list[str], dict]:
    first = env.reset(key, seed, {"prompt": "unused"})
    assert "Guess The Number" in first["observation"] and "between 1 and 20" in first["observation"]
    lo, hi, seen = 1, 20, []
    while True:
        guess = (lo + hi) // 2
        out = env.step(key, f"I think it is [{guess}]")
        if out["terminated"]:
            env.close(key)
            return seen, out
        seen.append(out["observation"])
        if "higher" in out["observation"]:
            lo = guess + 1
        else:
            hi = guess - 1


def test_bisection_wins_and_each_turn_is_only_the_new_game_text():
    env = actor()
    turns, end = play(env, "a", seed=0)
    assert end["reward"] == 1.0 and end["observation"] is None and "Congratulations" in end["info"]["reason"]
    assert turns, "the game answered at least one wrong guess"
    for text in turns:  # the rules are not repeated, and the reply is not echoed back
        assert re.fullmatch(r"\[GAME\] The target number is (higher|lower)\.", text), text
    assert play(env, "b", seed=0)[0] == turns  # a seed fixes the target
    assert any(play(env, f"c{s}", seed=s)[0] != turns for s in range(1, 6))


def test_invalid_moves_end_the_episode_with_the_games_loss_reward():
    env = actor()
    env.reset("x", 0, {})
    first = env.step("x", "no idea")  # the game warns once, as a user turn
    assert not first["terminated"] and first["observation"].startswith("[GAME] You attempted an invalid move")
    out = env.step("x", "still no idea")
    assert out["terminated"] and out["reward"] == 0.0 and "Invalid" in out["info"]["reason"]


def test_an_unknown_game_is_one_line_before_ray():
    import pytest

    from fnsft.errors import ConfigError

    s = parse_dataclass(EnvironmentSettings, {**GAME, "kwargs": {"env_id": "NoSuchGame-v0"}}, "rl.environment")
    with pytest.raises(ConfigError) as e:
        check_environment(s, "rl.environment")
    assert str(e.value).startswith("rl.environment.kwargs: ") and "\n" not in str(e.value)
