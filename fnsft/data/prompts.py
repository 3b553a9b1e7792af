"""Prompt-only data for RL stages: find the prompt column and shape rows as ``{"prompt", ...}``.

Accepted prompt columns, first match wins (``column_mapping`` renames source columns first):
``prompt`` (a string or a list of messages), ``question``, ``problem`` (strings), or
``messages`` (a conversation whose last turn is the user's). Every other column is kept, so
reward functions can read e.g. ``answer``. Row indexes in messages are 0-based.
"""

from __future__ import annotations

from typing import Any, Optional

from fnsft.data.formats import apply_column_mapping, format_error, is_message_list, normalize_messages
from fnsft.errors import ConfigError

PROMPT_COLUMNS = ("prompt", "question", "problem", "messages")

_LABELS = (
    "prompt (string or messages)",
    "question (string)",
    "problem (string)",
    "messages (conversation ending in a user turn)",
)


def _last_role(messages: list) -> str:
    last = messages[-1]
    return str(last.get("role", last.get("from", ""))).strip().lower()


def _matches(column: str, value: Any) -> bool:
    if column == "prompt":
        return isinstance(value, str) or is_message_list(value)
    if column == "messages":
        return is_message_list(value) and _last_role(value) in ("user", "human")
    return isinstance(value, str)


def detect_prompt_column(rows: list[dict], source: str, column_mapping: dict | None = None) -> str:
    """The column holding the prompt in ``rows`` (a few rows of ``source``); ConfigError if none fits all rows."""
    if not rows:
        raise ConfigError(f"data file {source}: no rows to find the prompt column in; is the data empty?")
    mapped = [apply_column_mapping(r, column_mapping) for r in rows]
    for column in PROMPT_COLUMNS:
        if all(_matches(column, r.get(column)) for r in mapped):
            return column
    raise format_error(source, rows, _LABELS, "column_mapping (e.g. {your_column: prompt})", column_mapping)


def to_prompt_row(
    row: dict,
    column: str,
    column_mapping: dict | None = None,
    *,
    index: int | None = None,
    source: str | None = None,
) -> dict:
    """``{"prompt": str | [messages], **other_columns}`` for one row; ``column`` is from :func:`detect_prompt_column`."""
    where = (f"data file {source}" if source else "dataset") + (f" row {index}" if index is not None else "")
    row = apply_column_mapping(row, column_mapping)
    value = row.get(column)
    extras = {k: v for k, v in row.items() if k != column}
    if column in ("prompt", "messages") and isinstance(value, list):
        prompt: Any = normalize_messages(value, where, column)
        if not prompt or not any(m["content"].strip() for m in prompt):
            raise ConfigError(f"{where}: {column} is empty; every row needs a prompt")
        if column == "messages" and prompt[-1]["role"] != "user":
            raise ConfigError(f"{where}: messages must end with a user turn (the prompt to answer)")
    elif isinstance(value, str):
        if not value.strip():
            raise ConfigError(f"{where}: {column} is empty; every row needs a prompt")
        prompt = value
    else:
        kind = "a string or a list of messages" if column == "prompt" else "a string"
        if column == "messages":
            kind = "a list of messages"
        raise ConfigError(f"{where}: {column} must be {kind}, got {type(value).__name__}")
    if column != "prompt" and "prompt" in extras:
        # Don't let a leftover column named 'prompt' overwrite the chosen prompt.
        extras["source_prompt"] = extras.pop("prompt")
    return {"prompt": prompt, **extras}


def check_prompt_file(path: str, key: str, column_mapping: Optional[dict] = None,
                      needs: Optional[dict[str, str]] = None) -> None:
    """Before Ray starts: ``path`` (named by config ``key``) exists, is readable, has rows with a
    prompt column and, after ``column_mapping``, every column of ``needs`` (config key -> column).
    A hub set is checked when loaded. One ``ConfigError`` line otherwise."""
    import os

    from fnsft.data.files import is_local_path, read_first_rows

    if is_local_path(path) and not os.path.exists(path):
        raise ConfigError(f"{key}: prompt file {path} not found")
    try:
        rows = read_first_rows(path, n=20)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"{key}: cannot read {path}: {type(e).__name__}: {e}") from None
    if not rows:
        if is_local_path(path):
            raise ConfigError(f"{key}: {path} has no rows")
        return
    detect_prompt_column(rows, path, column_mapping)
    columns = sorted({(column_mapping or {}).get(k, k) for row in rows for k in row})
    for need_key, column in (needs or {}).items():
        if column not in columns:
            raise ConfigError(f"{need_key}: {path} has no column {column!r}; its columns: {', '.join(columns)}")

