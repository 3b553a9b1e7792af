"""Multi-turn and tool-using RL: gymnasium-style text environments, tools from Python functions.

- :mod:`~fnsft.envs.settings` — the ``rl.environment`` YAML block.
- :mod:`~fnsft.envs.loading` — ``file.py:Class`` / ``module:Class`` loaded; :mod:`~fnsft.envs.checks`: all of it checked before Ray.
- :mod:`~fnsft.envs.tools` — tools from plain functions: JSON schemas, ``<tool_call>`` parsing.
- :mod:`~fnsft.envs.sandbox` — a tool call run in a separate process with a time and memory limit.
- :mod:`~fnsft.envs.wrappers` — the environment an actor steps: the user's class, or the built-in
  one-answer task, with tool calls answered as ``tool`` turns.
- :mod:`~fnsft.envs.transcript` — one episode's tokens: the model's (in the loss) and the
  environment's (masked), joined with the chat template.
- :mod:`~fnsft.envs.rollout` — the episodes of one RL iteration, stepped concurrently with generation.

See docs/environments.md.
"""
