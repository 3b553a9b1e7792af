"""Sampled episodes of multi-turn RL (``rl.environment``) as the report shows them.

The RL loop writes the first and the last iteration's first episodes to
``<stage folder>/transcripts/iteration-NNNN.json`` (:func:`fnsft.envs.rollout.save_transcripts`):
messages, reward, turns, failure. The report shows them side by side, so a reader sees what the
model did with the environment before and after training.
"""

from __future__ import annotations

import glob
import json
import os
from html import escape
from typing import Any

MAX_CHARS = 600  # per message on the page


def read_transcripts(folder: str) -> dict[str, list[dict[str, Any]]]:
    """``{"iteration-0001": [episode, ...], ...}`` from a stage folder ({} without transcripts)."""
    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "transcripts", "iteration-*.json"))):
        try:
            with open(path) as f:
                out[os.path.splitext(os.path.basename(path))[0]] = json.load(f)
        except (OSError, ValueError):
            continue  # a file being written: the next report reads it
    return out


def _episode(ep: dict) -> str:
    turns = []
    for m in ep.get("messages", []):
        role = str(m.get("role", ""))
        name = f" {m['name']}" if m.get("name") else ""
        text = str(m.get("content", ""))
        text = text if len(text) <= MAX_CHARS else text[:MAX_CHARS] + " …"
        turns.append(f'<div class="turn {escape(role)}"><b>{escape(role + name)}</b> {escape(text)}</div>')
    failure = f" · failed: {escape(str(ep['failure']))}" if ep.get("failure") else ""
    head = f"reward {float(ep.get('reward', 0)):.3f} · {int(ep.get('turns', 0))} turns{failure}"
    return f'<div class="episode"><div class="muted">{head}</div>{"".join(turns)}</div>'


def transcripts_html(transcripts: dict[str, list[dict]]) -> str:
    """A collapsible section per saved iteration ('' when there is none)."""
    if not transcripts:
        return ""
    parts = []
    for name, episodes in transcripts.items():
        label = name.replace("iteration-", "iteration ").replace(" 000", " ").replace(" 00", " ").replace(" 0", " ")
        parts.append(f"<details><summary>Episodes of {escape(label)} ({len(episodes)})</summary>"
                     f'{"".join(_episode(ep) for ep in episodes)}</details>')
    return f'<div class="transcripts"><h4>Sampled episodes</h4>{"".join(parts)}</div>'
