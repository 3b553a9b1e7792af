"""TextArena's single-player games as fnsft environments (``pip install textarena``).

    environment:
      class: fnsft.envs.textarena:TextArenaEnv
      kwargs: {env_id: GuessTheNumber-v0}      # any single-player TextArena game id
      max_turns: 10

TextArena's own loop (``reset(num_players=1, seed=)``, ``get_observation()``, ``step(action) ->
(done, info)``, ``close() -> (rewards, game_info)``) behind the gymnasium-style two methods the
environment actors call. The game's text goes to the model as user turns: the first observation
(its rules) on ``reset``, then only what is new after each reply — TextArena's observation is
the whole history, and it echoes the reply (``[Player] ...`` up to the game's ``[GAME]`` line), which the chat already holds
as the model's own turn. The game's reward for player 0 (TextArena's: 1 for a win, 0 or -1 for a
loss or an invalid move, by game) is the step reward when the game ends. The dataset rows are
only episode counters here (``options["row"]`` is not read); ``seed`` seeds the game.
"""

from __future__ import annotations

from typing import Any, Optional


class TextArenaEnv:
    def __init__(self, env_id: str, **make_kwargs: Any):
        import textarena

        self.env_id = env_id
        self.env = textarena.make(env_id, **make_kwargs)
        self.seen = ""

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None) -> tuple[str, dict]:
        self.env.reset(num_players=1, seed=seed)
        _, self.seen = self.env.get_observation()
        return self.seen.strip(), {"env_id": self.env_id}

    def step(self, action: str):
        done, _ = self.env.step(action)
        if done:
            rewards, game_info = self.env.close()
            reason = str((game_info or {}).get(0, {}).get("reason", ""))
            return None, float((rewards or {}).get(0, 0.0)), True, False, {"reason": reason}
        _, observation = self.env.get_observation()
        new = observation[len(self.seen):] if observation.startswith(self.seen) else observation
        self.seen = observation
        new = new.lstrip("\n")
        if new.startswith("[Player]") and "[GAME]" in new:  # the echo of the reply (TextArena's wording)
            new = new[new.index("[GAME]"):]
        return new.strip(), 0.0, False, False, {}
