"""Credentials never leave the process in what fnsft writes or shows: one rule for every place.

Keys come only from environment variables; still, a config may carry one by mistake (a
``base_url`` with ``user:password@``, a key pasted into a setting), and a value may reach a
summary or report under an innocent name. So redaction works two ways:

- **by name**: a setting whose name has a secret *word* (``secret``, ``password``...) or ends in
  ``key``/``token`` (``api_key``, ``HF_TOKEN``) is replaced — by word, so ``max_new_tokens`` (a
  count) is not a secret, and a name ending in ``_env`` (the NAME of an environment variable)
  stays;
- **by value**: any string containing the value of a secret-named environment variable
  (the same rule: ``*_KEY``, ``*_TOKEN``, ``*SECRET*``, ``*PASSWORD*``; at least 8 characters) has it replaced,
  and URLs lose their ``user:password@`` part and secret query parameters.

Used for ``resolved_config.yaml``, ``pipeline_summary.json``, the plan, the run report and
experiment-tracking parameters (:func:`redact`), and for what Train workers' runtime
environments carry (:func:`is_secret_name`).
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping, Optional

MASK = "***"
# Anywhere in a name: these words; as its last word: "key" and "token" (api_key, HF_TOKEN; not
# key_column or token_budget). AWS_ACCESS_KEY_ID names an identity, not a secret.
_SECRET_WORDS = {"apikey", "secret", "password", "passwd", "credential", "credentials", "authorization", "cookie"}
_SECRET_LAST_WORDS = {"key", "token"}
_NOT_SECRET_TAIL = ("_env",)  # names of environment variables, not their values
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<info>[^/\s@]+)@")
_QUERY_SECRET = re.compile(r"(?P<name>[?&](?:[A-Za-z0-9_]*?)(?:key|token|secret|password|signature|sig))=(?P<v>[^&#\s]+)",
                           re.IGNORECASE)


def _words(name: str) -> list[str]:
    # api_key / apiKey / API-KEY / wandb.api_key -> words
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(name))
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def is_secret_name(name: str) -> bool:
    """Whether a setting or environment variable called ``name`` holds a credential."""
    low = str(name).lower()
    if low.endswith(_NOT_SECRET_TAIL):
        return False
    words = _words(name)
    return any(w in _SECRET_WORDS for w in words) or bool(words and words[-1] in _SECRET_LAST_WORDS)


def secret_values(environ: Optional[Mapping[str, str]] = None, min_len: int = 8) -> list[str]:
    """The values of this process's secret-named environment variables (longest first)."""
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if is_secret_name(k) and isinstance(v, str) and len(v) >= min_len}
    return sorted(values, key=len, reverse=True)


def redact_text(text: str, values: Optional[list[str]] = None) -> str:
    """``text`` without URL credentials, secret query parameters or any of ``values``."""
    out = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
    out = _QUERY_SECRET.sub(lambda m: f"{m.group('name')}={MASK}", out)
    for v in secret_values() if values is None else values:
        out = out.replace(v, MASK)
    return out


def redact(value: Any, values: Optional[list[str]] = None, _name: str = "") -> Any:
    """A copy of ``value`` (dicts, lists, strings, numbers) safe to write or show."""
    values = secret_values() if values is None else values
    if isinstance(value, Mapping):
        return {k: (MASK if is_secret_name(k) and v not in (None, "", False) else redact(v, values, str(k)))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v, values) for v in value) if isinstance(value, list) else \
            tuple(redact(v, values) for v in value)
    if isinstance(value, str):
        return redact_text(value, values)
    return value


def looks_like_env_name(text: str) -> bool:
    """Whether ``text`` can be an environment variable's name (a pasted key cannot)."""
    return bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", text or ""))
