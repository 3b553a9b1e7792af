"""``stage_configs.rl.environment`` (and ``rlaif``): the environment block, one dataclass.

Referenced from :class:`fnsft.stages.rl.RLConfig` by its ``environment`` field; checked before
Ray starts by :func:`fnsft.envs.loading.check_environment`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class EnvironmentSettings:
    """``rl.environment``: multi-turn episodes against an environment, with optional tools.

    Off unless ``class`` or ``tools`` is set. With tools but no class, each prompt is a one-answer
    task: the model may call tools, and its first reply without a tool call ends the episode
    (scored by ``rl.rewards``).
    """

    class_: str = field(
        default="", metadata={"help": "The environment: 'path/to/file.py:Class' or 'module:Class' with gymnasium's "
                                      "reset(*, seed, options) -> (first user message, info) and step(reply) -> "
                                      "(observation|None, reward, terminated, truncated, info) (empty: tools only)."})
    kwargs: dict[str, Any] = field(default_factory=dict, metadata={"help": "Arguments of the class's constructor."})
    max_turns: int = field(default=4, metadata={"help": "Most model replies per episode (tool calls count)."})
    num_replicas: int = field(default=1, metadata={"help": "Environment actors; episodes are spread over them."})
    num_cpus: float = field(default=0.0, metadata={"help": "CPUs reserved per environment actor (0: none, a light "
                                                            "Python process)."})
    step_timeout_s: float = field(
        default=60.0, metadata={"help": "Most seconds one reset or step may take; past it (or on an exception) the "
                                        "episode ends with reward 0 and is counted (env/step_timeouts, env/step_errors)."})
    tools: list[str] = field(
        default_factory=list, metadata={"help": "Tools the model may call: 'file.py:function', 'module:function' or "
                                                "'python_expression' (built-in arithmetic); each needs a docstring."})
    tool_timeout_s: float = field(default=5.0, metadata={"help": "Most seconds one tool call may run (its own process)."})
    tool_memory_mb: int = field(default=512, metadata={"help": "Address-space limit of a tool call's process (MiB)."})
    transcripts: int = field(default=4, metadata={"help": "Episodes saved from the first and the last iteration "
                                                          "(transcripts/ in the output_dir, shown in the report)."})

    @property
    def enabled(self) -> bool:
        return bool(self.class_ or self.tools)

    def describe(self) -> str:
        """The plan's line (``--dry_run``)."""
        return (f"{self.class_ or 'one answer'} x{self.num_replicas}, max_turns={self.max_turns}, "
                f"tools: {', '.join(self.tools) or 'none'}")
