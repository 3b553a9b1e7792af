"""Environments and tools the tests name as ``tests/envs/env_fixtures.py:Name``."""

import os
import time

import gymnasium

from fnsft.rl.rewards import target_chars


class SecondReplyEnv:
    """Two turns: any first reply gets a second user turn; the second reply is scored by its share
    of the letters t, h, e (a dense reward the tiny model can learn) and ends the episode."""

    def __init__(self, letters: str = "the"):
        self.letters = letters
        self.turn = 0

    def reset(self, *, seed=None, options=None):
        self.turn = 0
        return (options or {}).get("row", {}).get("prompt", "Say something."), {}

    def step(self, action):
        self.turn += 1
        if self.turn == 1:
            return "Now reply again.", 0.0, False, False, {}
        return None, target_chars([""], [action], self.letters)[0], True, False, {}


class FlakyEnv(SecondReplyEnv):
    """Like SecondReplyEnv, but one episode in ``every`` raises in its second step and another
    hangs there."""

    calls = 0

    def __init__(self, every: int = 8, hang_s: float = 30.0, **kwargs):
        super().__init__(**kwargs)
        self.every, self.hang_s = every, hang_s

    def step(self, action):
        if self.turn == 1:
            FlakyEnv.calls += 1
            if FlakyEnv.calls % self.every == 1:
                raise RuntimeError("the environment broke")
            if FlakyEnv.calls % self.every == 2:
                time.sleep(self.hang_s)
        return super().step(action)


class BrokenEnv(SecondReplyEnv):
    """Its second step raises."""

    def step(self, action):
        if self.turn == 1:
            raise RuntimeError("the environment broke")
        return super().step(action)


class GuessEnv(gymnasium.Env):
    """A gymnasium.Env subclass: guess the seeded number (reward 1), with hints as observations."""

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.target = int(self.np_random.integers(1, 10))
        return "Guess my number from 1 to 9.", {"target": self.target}

    def step(self, action):
        guess = "".join(ch for ch in action if ch.isdigit())[:1]
        if guess == str(self.target):
            return None, 1.0, True, False, {}
        return ("higher" if not guess or int(guess) < self.target else "lower"), 0.0, False, False, {}


class NoStep:
    """Has reset but no step: rejected before Ray starts."""

    def reset(self, *, seed=None, options=None):
        return "hi", {}


def no_docstring(x: int) -> int:
    return x


def allocate(megabytes: int) -> str:
    """Allocate memory and report it.

    Args:
        megabytes: how many MiB to allocate.
    """
    block = bytearray(megabytes * 1024 * 1024)
    return f"allocated {len(block) // (1024 * 1024)} MiB"


def sleep(seconds: float) -> str:
    """Sleep, then say so.

    Args:
        seconds: how long to sleep.
    """
    time.sleep(seconds)
    return f"slept {seconds} in {os.getpid()}"


def read_env(name: str) -> str:
    """The value of an environment variable, as the tool's process sees it.

    Args:
        name: the variable's name.
    """
    return os.environ.get(name, "<unset>")
