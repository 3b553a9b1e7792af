"""The environment an actor steps, and the spec the rollout runs with.

:class:`EnvironmentSpec` is built on the driver (paths made absolute, tools described) and
goes to both sides: its ``factory`` to every environment actor
(:class:`fnsft.actors.environment.EnvironmentActor`), its limits and tool schemas to the
rollout (:mod:`fnsft.envs.rollout`). The factory builds the user's class, or
:class:`OneAnswer` when only tools are configured, wrapped in :class:`ToolCalling` when there
are tools: a reply with ``<tool_call>`` tags is answered by the tools (``tool`` turns), any
other reply goes to the environment's ``step``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from fnsft.envs.tools import Tool


class OneAnswer:
    """The built-in environment of ``tools`` without a ``class``: the row's prompt; the first
    reply without a tool call ends the episode (``rl.rewards`` score it)."""

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        return (options or {}).get("row", {}).get("prompt", ""), {}

    def step(self, action: str):
        return None, 0.0, True, False, {}


class ToolCalling:
    """``env`` with tools: tool calls in a reply are run (:func:`fnsft.envs.sandbox.run_tool`)
    and their results returned as ``tool`` messages (reward 0, the episode goes on)."""

    def __init__(self, env, tools: list[Tool], timeout_s: float, memory_mb: int):
        self.env, self.tools = env, {t.name: t for t in tools}
        self.timeout_s, self.memory_mb = timeout_s, memory_mb

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        return self.env.reset(seed=seed, options=options)

    def step(self, action: str):
        from fnsft.envs.sandbox import run_tool
        from fnsft.envs.tools import parse_tool_calls

        calls = parse_tool_calls(action)
        if not calls:
            return self.env.step(action)
        messages, errors = [], 0
        for call in calls:
            name = call.get("name", "")
            if "error" in call:
                ok, text = False, f"error: {call['error']}"
            elif name not in self.tools:
                ok, text = False, f"error: no tool named {name!r}; tools: {', '.join(sorted(self.tools))}"
            else:
                ok, text = run_tool(self.tools[name].ref, call["arguments"], self.timeout_s, self.memory_mb)
            errors += not ok
            messages.append({"role": "tool", "name": name, "content": text})
        return messages, 0.0, False, False, {"tool_calls": len(calls), "tool_errors": errors}

    def close(self) -> None:
        close = getattr(self.env, "close", None)
        if callable(close):
            close()


@dataclass
class EnvironmentFactory:
    """Builds one episode's environment inside an environment actor (picklable: references only)."""

    class_ref: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    tools: list[Tool] = field(default_factory=list)
    tool_timeout_s: float = 5.0
    tool_memory_mb: int = 512

    def __call__(self):
        from fnsft.envs.loading import load_environment_class

        env = load_environment_class(self.class_ref, "environment.class")(**self.kwargs) \
            if self.class_ref else OneAnswer()
        return ToolCalling(env, self.tools, self.tool_timeout_s, self.tool_memory_mb) if self.tools else env


@dataclass
class EnvironmentSpec:
    """What the rollout needs to know about ``rl.environment`` (see :func:`build_spec`)."""

    factory: EnvironmentFactory
    max_turns: int = 4
    step_timeout_s: float = 60.0
    transcripts: int = 4

    @property
    def schemas(self) -> list[dict]:
        return [t.schema for t in self.factory.tools]


def build_spec(settings, key: str) -> EnvironmentSpec:
    """``rl.environment`` as the actors and the rollout take it (file paths absolute)."""
    from fnsft.envs.loading import resolve_ref
    from fnsft.envs.tools import load_tools

    factory = EnvironmentFactory(resolve_ref(settings.class_) if settings.class_ else "", dict(settings.kwargs),
                                 load_tools(settings.tools, f"{key}.tools"), settings.tool_timeout_s,
                                 settings.tool_memory_mb)
    return EnvironmentSpec(factory, settings.max_turns, settings.step_timeout_s, settings.transcripts)


def launch(settings, key: str, stage_name: str):
    """The environment actors of ``settings`` (``rl.environment``) as ``Roles.environment``."""
    from fnsft.actors.environment import launch_environments
    from fnsft.actors.group import RoleResources

    return launch_environments(build_spec(settings, key), RoleResources(settings.num_replicas, settings.num_cpus),
                               stage_name)
