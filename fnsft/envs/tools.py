"""Tools from plain Python functions (``rl.environment.tools``): schemas, prompts, parsing.

A tool is a function with type hints and a Google-style docstring; transformers'
``get_json_schema`` turns it into the JSON schema that the chat template's ``tools=`` renders
(templates that ignore ``tools``, like the tiny model's, get :func:`tool_system_prompt`
instead). The model calls a tool the Hermes/Qwen way::

    <tool_call>
    {"name": "python_expression", "arguments": {"expression": "12 * 7"}}
    </tool_call>

:func:`parse_tool_calls` reads these; :mod:`fnsft.envs.sandbox` runs them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from fnsft.errors import ConfigError

# Built-in tools by short name.
BUILTIN = {"python_expression": "fnsft.envs.builtin_tools:python_expression"}
TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


@dataclass(frozen=True)
class Tool:
    """One tool: its ``name`` (the function's), ``ref`` (how a sandbox process imports it)
    and ``schema`` (the chat template's ``tools=`` entry)."""

    name: str
    ref: str
    schema: dict


def load_tools(refs: list[str], key: str) -> list[Tool]:
    """``refs`` loaded and described; a ConfigError naming the entry for a tool that cannot be
    imported, is not a function, or has no docstring / typed arguments to build a schema from."""
    from fnsft.envs.loading import load_object, resolve_ref

    loaded = []  # every entry loaded and checked first: transformers (and torch) only for a good list
    for i, ref in enumerate(refs):
        where = f"{key}[{i}]"
        ref = BUILTIN.get(ref, ref)
        fn = load_object(ref, where)
        if not callable(fn) or isinstance(fn, type):
            raise ConfigError(f"{where}: {ref} is not a function")
        if not (fn.__doc__ or "").strip():
            raise ConfigError(f"{where}: tool {ref} has no docstring; write one with a description and an Args: "
                              "section (it becomes the JSON schema the model sees)")
        loaded.append((where, ref, fn))
    from transformers.utils import get_json_schema

    out: list[Tool] = []
    for where, ref, fn in loaded:
        try:
            schema = get_json_schema(fn)
        except Exception as e:
            raise ConfigError(f"{where}: cannot describe tool {ref}: {e}") from None
        if any(t.name == schema["function"]["name"] for t in out):
            raise ConfigError(f"{where}: two tools named {schema['function']['name']!r}")
        out.append(Tool(schema["function"]["name"], resolve_ref(ref), schema))
    return out


def tool_system_prompt(schemas: list[dict]) -> str:
    """The tools described in a system message, Hermes-style (for templates that ignore ``tools=``)."""
    lines = "\n".join(json.dumps(s) for s in schemas)
    return ("You may call one or more functions to help answer. The functions:\n<tools>\n" + lines + "\n</tools>\n"
            "To call one, reply with a JSON object inside tags:\n<tool_call>\n"
            '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>')


def parse_tool_calls(text: str) -> list[dict[str, Any]]:
    """Every ``<tool_call>{json}</tool_call>`` in a reply, in order: ``{"name", "arguments"}``,
    or ``{"error"}`` for one that is not valid JSON with a name (an unclosed last tag counts:
    generation may stop at the limit)."""
    calls = []
    for body in TOOL_CALL.findall(text or ""):
        try:
            call = json.loads(body)
        except json.JSONDecodeError as e:
            calls.append({"error": f"the tool call is not valid JSON ({e.msg})"})
            continue
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            calls.append({"error": 'a tool call needs {"name": ..., "arguments": {...}}'})
            continue
        args = call.get("arguments", call.get("parameters", {}))
        if isinstance(args, str):  # some models write the arguments as a JSON string
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                pass
        if not isinstance(args, dict):
            calls.append({"error": f"the arguments of {call['name']} must be a JSON object"})
            continue
        calls.append({"name": call["name"], "arguments": args})
    return calls
