"""SFT dataset formats: detect which one a file uses and normalise rows for TRL's SFTTrainer.

Formats (the ``dataset_format`` YAML key; ``column_mapping`` renames source columns first):

- ``alpaca``: ``instruction``, ``output``, optional ``input`` and ``system``
- ``sharegpt``: ``conversations``, a list of ``{"from": "human"|"gpt"|..., "value": ...}``
- ``messages``: ``messages``, a list of ``{"role": ..., "content": ...}``
- ``prompt_completion``: ``prompt`` and ``completion``, each a string or a list of messages
- ``text``: ``text``, a plain string (loss on every token)

Conversational rows become ``{"prompt": [messages], "completion": [assistant message]}``: the
prompt is everything before the last assistant turn, so TRL computes the loss on the answer only.

Detection works on plain dicts (a few rows from :func:`fnsft.data.files.read_first_rows`); it
never imports ``datasets``. Row indexes in messages are 0-based.
"""

from __future__ import annotations

from typing import Any, Iterable

from fnsft.data.labels import SFT_LABELS as _LABELS
from fnsft.errors import ConfigError

SFT_FORMATS = ("alpaca", "sharegpt", "messages", "prompt_completion", "text")

# Speaker names seen in the wild -> chat-template roles.
ROLE_ALIASES = {
    "user": "user",
    "human": "user",
    "system": "system",
    "assistant": "assistant",
    "gpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "tool": "tool",
    "function": "tool",
    "observation": "tool",
    "ipython": "tool",
}


def _where(source: str | None, index: int | None) -> str:
    src = f"data file {source}" if source else "dataset"
    return f"{src} row {index}" if index is not None else src


def apply_column_mapping(row: dict, column_mapping: dict | None) -> dict:
    """``row`` with source columns renamed to canonical names (``{"question": "prompt"}``)."""
    if not column_mapping:
        return row
    # Renamed columns win over same-named source columns; order is kept for error messages.
    targets = {dst for src, dst in column_mapping.items() if src in row}
    out = {}
    for key, value in row.items():
        if key in column_mapping:
            out[column_mapping[key]] = value
        elif key not in targets:
            out[key] = value
    return out


def columns_found(rows: Iterable[dict]) -> list[str]:
    """Column names across ``rows``, in first-seen order."""
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            seen.setdefault(str(key), None)
    return list(seen)


def format_error(
    source: str, rows: list[dict], labels: Iterable[str], option_keys: str, column_mapping: dict | None = None
) -> ConfigError:
    """The one-line 'cannot detect the dataset format' error shared by SFT, preference and prompt data."""
    cols = ", ".join(columns_found(rows)) or "none"
    mapped = ""
    if column_mapping:
        after = ", ".join(columns_found(apply_column_mapping(r, column_mapping) for r in rows)) or "none"
        mapped = f" (after column_mapping: {after})"
    return ConfigError(
        f"data file {source}: cannot detect the dataset format; columns found: {cols}{mapped}; "
        f"accepted formats: {', '.join(labels)}; set {option_keys} to choose one"
    )


def content_text(value: Any, what: str, where: str) -> str:
    """Message content as a string; OpenAI-style lists of text parts are joined."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, list) and all(isinstance(p, dict) and isinstance(p.get("text"), str) for p in value):
        return "".join(p["text"] for p in value)
    raise ConfigError(f"{where}: {what} must be a string, got {type(value).__name__}")


def normalize_messages(messages: Any, where: str, column: str = "messages") -> list[dict]:
    """A list of ``{role, content}`` or ShareGPT ``{from, value}`` turns as ``{role, content}`` dicts.

    Roles are mapped to user/assistant/system/tool (``human`` -> ``user``, ``gpt`` -> ``assistant``).
    """
    if not isinstance(messages, list):
        raise ConfigError(f"{where}: {column} must be a list of messages, got {type(messages).__name__}")
    out = []
    for i, turn in enumerate(messages):
        if not isinstance(turn, dict):
            raise ConfigError(f"{where}: {column}[{i}] must be an object with role/content or from/value")
        if "role" in turn:
            speaker, content = turn["role"], turn.get("content")
        elif "from" in turn:
            speaker, content = turn["from"], turn.get("value")
        else:
            raise ConfigError(
                f"{where}: {column}[{i}] has keys {', '.join(map(str, turn)) or 'none'}; expected role/content or from/value"
            )
        role = ROLE_ALIASES.get(str(speaker).strip().lower())
        if role is None:
            raise ConfigError(
                f"{where}: {column}[{i}] has unknown role {speaker!r}; accepted: {', '.join(ROLE_ALIASES)}"
            )
        out.append({"role": role, "content": content_text(content, f"{column}[{i}] content", where)})
    return out


def is_message_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(isinstance(t, dict) and ({"role", "content"} <= t.keys() or {"from", "value"} <= t.keys()) for t in value)
    )


def _is_text_or_messages(value: Any) -> bool:
    return isinstance(value, str) or is_message_list(value)


def _row_sft_format(row: dict) -> str | None:
    """The format one (already mapped) row matches, checking keys and value types; None if none."""
    if is_message_list(row.get("messages")):
        return "messages"
    if is_message_list(row.get("conversations")):
        return "sharegpt"
    if (
        isinstance(row.get("instruction"), str)
        and isinstance(row.get("output"), str)
        and isinstance(row.get("input", ""), (str, type(None)))
    ):
        return "alpaca"
    if _is_text_or_messages(row.get("prompt")) and _is_text_or_messages(row.get("completion")):
        return "prompt_completion"
    if isinstance(row.get("text"), str):
        return "text"
    return None


def detect_sft_format(rows: list[dict], source: str, column_mapping: dict | None = None) -> str:
    """The SFT format shared by ``rows`` (a few rows of ``source``); ConfigError if none or mixed.

    Serves ``dataset_format: auto``; ``column_mapping`` renames source columns first.
    """
    if not rows:
        raise ConfigError(f"data file {source}: no rows to detect the dataset format from; is the data empty?")
    found: dict[str, int] = {}
    for i, row in enumerate(rows):
        fmt = _row_sft_format(apply_column_mapping(row, column_mapping))
        if fmt is None:
            raise format_error(source, rows, _LABELS.values(), "dataset_format and column_mapping", column_mapping)
        found.setdefault(fmt, i)
    if len(found) > 1:
        seen = ", ".join(f"row {i}: {fmt}" for fmt, i in found.items())
        raise ConfigError(
            f"data file {source}: rows use different formats ({seen}); use one format per dataset "
            f"({', '.join(SFT_FORMATS)}) or set dataset_format and column_mapping to choose one"
        )
    return next(iter(found))


def _split_last_assistant(messages: list[dict], where: str) -> tuple[list[dict], dict]:
    """(turns before the last assistant turn, that turn). Turns after it are dropped: nothing to learn."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i]["role"] == "assistant":
            answer = messages[i]
            if not answer["content"].strip():
                raise ConfigError(f"{where}: the last assistant turn is empty; every row needs a non-empty answer")
            if i == 0:
                raise ConfigError(f"{where}: the conversation starts with the assistant turn; there is no prompt before it")
            return messages[:i], answer
    raise ConfigError(f"{where}: no assistant turn; every conversation needs at least one assistant answer")


def _with_system(prompt: list[dict], system: str | None) -> list[dict]:
    if system and not any(m["role"] == "system" for m in prompt):
        return [{"role": "system", "content": system}, *prompt]
    return prompt


def _as_messages(value: Any, default_role: str, column: str, where: str) -> list[dict]:
    if isinstance(value, str):
        return [{"role": default_role, "content": value}]
    return normalize_messages(value, where, column)


def to_prompt_completion(
    row: dict,
    fmt: str,
    column_mapping: dict | None = None,
    system_prompt: str | None = None,
    *,
    index: int | None = None,
    source: str | None = None,
    as_chat: bool = False,
) -> dict:
    """One row in the shape TRL's SFTTrainer takes.

    Conversational formats give ``{"prompt": [messages], "completion": [{"role": "assistant", ...}]}``
    (completion-only loss); plain-string ``prompt_completion`` stays ``{"prompt": str,
    "completion": str}``; ``text`` stays ``{"text": str}``. ``system_prompt`` (YAML
    ``system_prompt``) is prepended to conversations that have no system turn; plain strings are
    left alone unless ``as_chat`` (YAML ``apply_chat_template``) makes them a user turn and an
    assistant answer. ``index``/``source`` only label errors.
    """
    where = _where(source, index)
    if fmt not in SFT_FORMATS:
        raise ConfigError(f"unknown SFT dataset_format {fmt!r}; accepted: {', '.join(SFT_FORMATS)}")
    row = apply_column_mapping(row, column_mapping)

    def need(key: str) -> Any:
        if row.get(key) is None:
            raise ConfigError(
                f"{where}: missing column {key!r} for format {_LABELS[fmt]}; columns: {', '.join(map(str, row)) or 'none'}"
            )
        return row[key]

    if fmt == "text":
        text = content_text(need("text"), "text", where)
        if not text.strip():
            raise ConfigError(f"{where}: text is empty; every row needs non-empty text")
        return {"text": text}

    if fmt == "alpaca":
        instruction = content_text(need("instruction"), "instruction", where)
        extra = content_text(row.get("input"), "input", where)
        output = content_text(need("output"), "output", where)
        if not instruction.strip():
            raise ConfigError(f"{where}: instruction is empty; every row needs an instruction")
        if not output.strip():
            raise ConfigError(f"{where}: output is empty; every row needs a non-empty answer")
        user = instruction + ("\n\n" + extra if extra.strip() else "")
        system = content_text(row.get("system"), "system", where) or system_prompt
        prompt = _with_system([{"role": "user", "content": user}], system)
        return {"prompt": prompt, "completion": [{"role": "assistant", "content": output}]}

    if fmt in ("messages", "sharegpt"):
        column = "messages" if fmt == "messages" else "conversations"
        prompt, answer = _split_last_assistant(normalize_messages(need(column), where, column), where)
        return {"prompt": _with_system(prompt, system_prompt), "completion": [answer]}

    # prompt_completion
    prompt, completion = need("prompt"), need("completion")
    if isinstance(prompt, str) and isinstance(completion, str):
        if not prompt.strip():
            raise ConfigError(f"{where}: prompt is empty; every row needs a prompt")
        if not completion.strip():
            raise ConfigError(f"{where}: completion is empty; every row needs a non-empty completion")
        if not as_chat:
            return {"prompt": prompt, "completion": completion}
        return {"prompt": _with_system([{"role": "user", "content": prompt}], system_prompt),
                "completion": [{"role": "assistant", "content": completion}]}
    conversation = _as_messages(prompt, "user", "prompt", where) + _as_messages(
        completion, "assistant", "completion", where
    )
    prompt_msgs, answer = _split_last_assistant(conversation, where)
    return {"prompt": _with_system(prompt_msgs, system_prompt), "completion": [answer]}
