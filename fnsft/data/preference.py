"""Preference (DPO) dataset formats: detect, normalise to prompt/chosen/rejected, screen bad pairs.

Formats (the ``dataset_format`` YAML key of preference stages):

- ``prompt_chosen_rejected``: ``prompt``, ``chosen``, ``rejected``; each a string or a list of
  messages. ``chosen``/``rejected`` may also be whole conversations that repeat the prompt
  (UltraFeedback style); the turns before their last assistant turn then become the prompt.
- ``implicit_prompt``: ``chosen`` and ``rejected`` only, each a whole conversation (message list);
  the prompt is the turns before the last assistant turn, which both must share.

Unusable pairs (reported, and dropped with ``drop_invalid_pairs: true``): ``identical`` chosen and
rejected answers; ``empty_response`` (an empty or missing answer, or a conversation with no
assistant turn); ``missing_prompt`` (no prompt, an empty one, or chosen and rejected that do not
share the same prompt).
- ``hh_rlhf``: Anthropic-HH text, ``chosen``/``rejected`` strings of ``\\n\\nHuman: ...
  \\n\\nAssistant: ...``; the prompt is the text up to and including the last ``\\n\\nAssistant:``.
- ``pairwise``: ``prompt``, ``response_a``, ``response_b``, ``preference``. ``preference`` says
  which response is better: ``"a"``/``"b"`` (any case) or ``1``/``2`` (1 = response_a,
  2 = response_b, as int or string). Anything else (``0``, ``"tie"``, booleans) is an error,
  because 0/1 is used both ways in the wild.

Output rows are ``{"prompt", "chosen", "rejected"}``: conversational (prompt = message list,
chosen/rejected = ``[{"role": "assistant", "content": ...}]``) when the input had message
lists, else plain strings. Row indexes in messages are 0-based.
"""

from __future__ import annotations

from typing import Any, Iterable

from fnsft.data.formats import (
    apply_column_mapping,
    content_text,
    format_error,
    is_message_list,
    normalize_messages,
)
from fnsft.data.labels import PREFERENCE_LABELS
from fnsft.errors import ConfigError

PREFERENCE_FORMATS = ("prompt_chosen_rejected", "implicit_prompt", "hh_rlhf", "pairwise")

# Why a pair is unusable -> the words used in the error.
UNUSABLE_REASONS = {
    "identical": "identical chosen/rejected",
    "empty_response": "empty response",
    "missing_prompt": "missing or mismatched prompt",
}

_HH_ASSISTANT = "\n\nAssistant:"
_HH_HUMAN = "Human:"
_PREFERRED = {"a": "a", "b": "b", "1": "a", "2": "b"}


def _is_hh_text(value: Any) -> bool:
    return isinstance(value, str) and _HH_ASSISTANT in value and _HH_HUMAN in value


def _is_text_or_messages(value: Any) -> bool:
    return isinstance(value, str) or is_message_list(value)


def _row_preference_format(row: dict) -> str | None:
    if all(k in row for k in ("prompt", "response_a", "response_b", "preference")):
        return "pairwise"
    if "prompt" in row and _is_text_or_messages(row.get("chosen")) and _is_text_or_messages(row.get("rejected")):
        return "prompt_chosen_rejected"
    if is_message_list(row.get("chosen")) and is_message_list(row.get("rejected")):
        return "implicit_prompt"
    if _is_hh_text(row.get("chosen")) and _is_hh_text(row.get("rejected")):
        return "hh_rlhf"
    return None


def detect_preference_format(rows: list[dict], source: str, column_mapping: dict | None = None) -> str:
    """The preference format shared by ``rows`` (a few rows of ``source``); ConfigError if none or mixed."""
    if not rows:
        raise ConfigError(f"data file {source}: no rows to detect the preference format from; is the data empty?")
    found: dict[str, int] = {}
    for i, row in enumerate(rows):
        fmt = _row_preference_format(apply_column_mapping(row, column_mapping))
        if fmt is None:
            raise format_error(
                source, rows, PREFERENCE_LABELS.values(), "dataset_format and column_mapping", column_mapping
            )
        found.setdefault(fmt, i)
    if len(found) > 1:
        seen = ", ".join(f"row {i}: {fmt}" for fmt, i in found.items())
        raise ConfigError(
            f"data file {source}: rows use different preference formats ({seen}); use one format per dataset "
            f"({', '.join(PREFERENCE_FORMATS)}) or set dataset_format and column_mapping to choose one"
        )
    return next(iter(found))


class _Unusable(Exception):
    def __init__(self, reason: str):
        self.reason = reason


def _split_conversation(messages: list[dict]) -> tuple[list[dict], str]:
    """(turns before the last assistant turn, its content); no assistant turn -> empty response."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i]["role"] == "assistant":
            return messages[:i], messages[i]["content"]
    raise _Unusable("empty_response")


def _response(value: Any, column: str, where: str) -> tuple[list[dict] | None, str]:
    """A chosen/rejected value as (prompt turns it repeats, or None for a plain string; answer)."""
    if value is None:
        raise _Unusable("empty_response")
    if isinstance(value, str):
        return None, value
    messages = normalize_messages(value, where, column)
    if not messages:
        raise _Unusable("empty_response")
    return _split_conversation(messages)


def _normalize(row: dict, fmt: str, where: str) -> dict:
    if fmt == "hh_rlhf":
        chosen = content_text(row.get("chosen"), "chosen", where)
        rejected = content_text(row.get("rejected"), "rejected", where)
        cut = chosen.rfind(_HH_ASSISTANT)
        if cut < 0:
            raise _Unusable("empty_response")
        prompt = chosen[: cut + len(_HH_ASSISTANT)]
        if not rejected.startswith(prompt):
            raise _Unusable("missing_prompt")  # the two texts diverge before the last answer
        if not prompt.replace(_HH_ASSISTANT, "").replace(_HH_HUMAN, "").strip():
            raise _Unusable("missing_prompt")
        return _checked(prompt, chosen[len(prompt):], rejected[len(prompt):], conversational=False)

    if fmt == "pairwise":
        pref = row.get("preference")
        key = str(pref).strip().lower() if isinstance(pref, (str, int)) and not isinstance(pref, bool) else None
        if key not in _PREFERRED:
            raise ConfigError(
                f"{where}: preference {pref!r} is not accepted; use 'a' or 'b' (or 1 = response_a, 2 = response_b)"
            )
        a, b = row.get("response_a"), row.get("response_b")
        row = {"prompt": row.get("prompt"), "chosen": a, "rejected": b}
        if _PREFERRED[key] == "b":
            row["chosen"], row["rejected"] = b, a
        fmt = "prompt_chosen_rejected"

    chosen_prefix, chosen = _response(row.get("chosen"), "chosen", where)
    rejected_prefix, rejected = _response(row.get("rejected"), "rejected", where)
    if fmt == "implicit_prompt" or chosen_prefix or rejected_prefix:
        # The conversations carry the prompt themselves; both must carry the same one.
        if chosen_prefix != rejected_prefix:
            raise _Unusable("missing_prompt")  # no prompt shared by both answers
        prompt: Any = chosen_prefix or []
        if not prompt and fmt != "implicit_prompt":
            prompt = row.get("prompt")
    else:
        prompt = row.get("prompt")

    conversational = any(isinstance(v, list) for v in (prompt, row.get("chosen"), row.get("rejected")))
    if prompt is None or (isinstance(prompt, (str, list)) and not prompt):
        raise _Unusable("missing_prompt")
    if conversational:
        if isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
        prompt = normalize_messages(prompt, where, "prompt")
        if not any(m["content"].strip() for m in prompt):
            raise _Unusable("missing_prompt")
    else:
        prompt = content_text(prompt, "prompt", where)
        if not prompt.strip():
            raise _Unusable("missing_prompt")
    return _checked(prompt, chosen, rejected, conversational)


def _checked(prompt: Any, chosen: str, rejected: str, conversational: bool) -> dict:
    if not chosen.strip() or not rejected.strip():
        raise _Unusable("empty_response")
    if chosen.strip() == rejected.strip():
        raise _Unusable("identical")
    if conversational:
        return {
            "prompt": prompt,
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
        }
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def normalize_preference_row(
    row: dict,
    fmt: str,
    column_mapping: dict | None = None,
    *,
    index: int | None = None,
    source: str | None = None,
) -> tuple[dict | None, str | None]:
    """One row as ``({"prompt", "chosen", "rejected"}, None)``, or ``(None, reason)`` if unusable.

    ``reason`` is one of ``UNUSABLE_REASONS``; malformed rows (wrong types, bad ``preference``)
    raise ConfigError. ``index``/``source`` only label errors.
    """
    if fmt not in PREFERENCE_FORMATS:
        raise ConfigError(f"unknown preference dataset_format {fmt!r}; accepted: {', '.join(PREFERENCE_FORMATS)}")
    where = (f"data file {source}" if source else "dataset") + (f" row {index}" if index is not None else "")
    try:
        return _normalize(apply_column_mapping(row, column_mapping), fmt, where), None
    except _Unusable as bad:
        return None, bad.reason


def _rows_text(indices: list[int], limit: int = 10) -> str:
    shown = ", ".join(map(str, indices[:limit]))
    more = f" and {len(indices) - limit} more" if len(indices) > limit else ""
    return ("row " if len(indices) == 1 else "rows ") + shown + more


def normalize_preference_rows(
    rows: Iterable[dict],
    fmt: str,
    source: str,
    drop_invalid: bool = False,
    column_mapping: dict | None = None,
) -> tuple[list[dict], dict]:
    """All rows as ``{"prompt", "chosen", "rejected"}`` plus a report of unusable pairs.

    The report is ``{"total": n, "dropped": k, "reasons": {"identical": i, "empty_response": e,
    "missing_prompt": m}}``. Unusable pairs raise ConfigError listing their rows unless
    ``drop_invalid`` (YAML ``drop_invalid_pairs: true``), which drops them.
    """
    out: list[dict] = []
    bad: dict[str, list[int]] = {reason: [] for reason in UNUSABLE_REASONS}
    total = 0
    for i, row in enumerate(rows):
        total += 1
        normalized, reason = normalize_preference_row(row, fmt, column_mapping, index=i, source=source)
        if reason is None:
            out.append(normalized)
        else:
            bad[reason].append(i)
    dropped = sum(len(v) for v in bad.values())
    report = {"total": total, "dropped": dropped, "reasons": {k: len(v) for k, v in bad.items()}}
    if dropped and not drop_invalid:
        details = "; ".join(f"{UNUSABLE_REASONS[k]}: {_rows_text(v)}" for k, v in bad.items() if v)
        raise ConfigError(
            f"{source}: {dropped} unusable preference pair{'s' if dropped != 1 else ''} ({details}); "
            "fix them or set drop_invalid_pairs: true to drop them"
        )
    if total and not out:
        raise ConfigError(f"{source}: all {total} preference pairs are unusable; nothing left to train on")
    return out, report
