"""Reward functions over a whole episode (``rewards: [{type: function, function: ...}]``).

Reward terms score an episode's final reply; they also get its ``transcript`` column (the
messages, tool turns included), which these read.
"""

from __future__ import annotations


def tool_success(prompts, completions, transcript, **_) -> list[float]:
    """1.0 for an episode in which a tool answered without an error, else 0.0 (a shaping term
    that teaches a model to call its tools; weight it below the task's own reward)."""
    return [float(any(m.get("role") == "tool" and not str(m.get("content", "")).startswith("error:")
                      for m in messages or [])) for messages in transcript]
