"""Settings of one OpenAI-compatible endpoint (YAML: a judge's or teacher's ``type: api`` block).

Light on purpose (no ``openai``, ``ray`` or ``torch`` import): config validation and ``--dry_run``
import it. The client that uses these settings is :class:`fnsft.actors.api_client.ApiClient`.

Names follow the ``openai`` client: ``base_url``, ``api_key_env`` (the *name* of the environment
variable holding the key, never the key), and without them the client's own defaults,
``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional
from urllib.parse import urlsplit, urlunsplit

from fnsft.errors import ConfigError
from fnsft.utils.redact import looks_like_env_name

DEFAULT_BASE_URL_ENV = "OPENAI_BASE_URL"
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"


@dataclass
class ApiSettings:
    """One OpenAI-compatible endpoint: where it is, how hard to call it, how much to spend."""

    model: Optional[str] = field(default=None, metadata={
        "help": "Model name at the endpoint (e.g. 'gpt-4o-mini', or the path vLLM serves)."})
    base_url: Optional[str] = field(default=None, metadata={
        "help": "Endpoint URL, e.g. 'http://127.0.0.1:8000/v1'. Unset: the OPENAI_BASE_URL "
                "environment variable, as the openai client does."})
    api_key_env: Optional[str] = field(default=None, metadata={
        "help": "NAME of the environment variable that holds the API key (the key itself never "
                "goes in YAML, logs or files). Unset: OPENAI_API_KEY; local servers need none."})
    max_concurrency: int = field(default=8, metadata={
        "help": "Most requests in flight at once, shared by every worker of the run."})
    requests_per_minute: Optional[int] = field(default=None, metadata={
        "help": "Rate limit: requests are spaced 60/requests_per_minute seconds apart. Unset: no limit."})
    max_retries: int = field(default=5, metadata={
        "help": "Retries of a failed request (429, 408, 409, 5xx, timeouts, dropped connections) "
                "with exponential backoff that honours Retry-After (up to max_retry_after_s)."})
    timeout_s: float = field(default=60.0, metadata={
        "help": "Per-attempt timeout in seconds (each retry gets its own, within retry_budget_s)."})
    retry_budget_s: float = field(default=300.0, metadata={
        "help": "Most seconds one request may take, every attempt and wait included: no retry "
                "starts past it, and an attempt's timeout is cut to the time left."})
    max_retry_after_s: float = field(default=30.0, metadata={
        "help": "Longest wait a server's Retry-After is honoured for; a longer one is capped to "
                "this (and counted in the stats as retry_after_capped)."})
    max_calls: Optional[int] = field(default=None, metadata={
        "help": "Budget: most API calls paid for (every attempt, retries included, counts once per "
                "choice asked, n; cache hits are free) before the stage stops with a one-line "
                "message; everything already answered stays cached. Unset: no limit. One counter "
                "per run: every worker of the run calls through the run's one API actor."})
    max_total_tokens: Optional[int] = field(default=None, metadata={
        "help": "Budget: most prompt + completion tokens (as the endpoint reports them) before "
                "the stage stops with a one-line message; requests already in flight finish. "
                "Unset: no limit."})
    extra_body: dict = field(default_factory=dict, metadata={
        "help": "Extra JSON fields sent with every request (server-specific, e.g. vLLM's "
                "{'top_k': 20}); part of the cache key."})


def check_api_settings(s: ApiSettings, key: str, environ: Mapping[str, str] = os.environ,
                       names: Optional[Mapping[str, str]] = None) -> None:
    """Raise :class:`ConfigError` (one line naming the YAML key) when ``s`` cannot work.

    Args:
        s: the settings.
        key: YAML path of the block, e.g. ``stage_configs.rlaif.judge``.
        environ: where environment variables are looked up (tests pass a dict).
        names: YAML names of fields where a stage spells them differently, e.g.
            ``{"model": "teacher_model_path", "base_url": "teacher_base_url"}``.
    """
    names = dict(names or {})

    def at(f: str) -> str:
        return f"{key}.{names.get(f, f)}" if key else names.get(f, f)

    if not s.model or not isinstance(s.model, str):
        raise ConfigError(f"{at('model')}: the model name at the API endpoint is required "
                          f"(e.g. 'gpt-4o-mini')")
    if s.base_url is not None and (not isinstance(s.base_url, str)
                                   or not s.base_url.startswith(("http://", "https://"))):
        raise ConfigError(f"{at('base_url')}: {s.base_url!r} is not an http(s) URL "
                          f"(e.g. 'http://127.0.0.1:8000/v1')")
    if not s.base_url and not environ.get(DEFAULT_BASE_URL_ENV):
        raise ConfigError(f"{at('base_url')}: no endpoint: set it, or export "
                          f"{DEFAULT_BASE_URL_ENV} (e.g. https://api.openai.com/v1)")
    if s.api_key_env is not None:
        if not isinstance(s.api_key_env, str) or not s.api_key_env:
            raise ConfigError(f"{at('api_key_env')}: the NAME of an environment variable "
                              f"(e.g. OPENAI_API_KEY), not the key")
        if not looks_like_env_name(s.api_key_env):  # a pasted key: never echo it
            raise ConfigError(f"{at('api_key_env')}: this looks like a key, not the NAME of an environment "
                              f"variable; export the key (e.g. OPENAI_API_KEY=...) and give that name here")
        if s.api_key_env not in environ:
            raise ConfigError(f"{at('api_key_env')}: environment variable {s.api_key_env} is "
                              f"not set (export it with the API key)")
    for f, lowest in (("max_concurrency", 1), ("requests_per_minute", 1), ("max_retries", 0),
                      ("timeout_s", None), ("retry_budget_s", None), ("max_retry_after_s", None),
                      ("max_calls", 1), ("max_total_tokens", 1)):
        v = getattr(s, f)
        if v is None and f in ("requests_per_minute", "max_calls", "max_total_tokens"):
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (
                not f.endswith("_s") and not isinstance(v, int)):
            raise ConfigError(f"{at(f)}: {v!r} is not a number")
        if (lowest is None and v <= 0) or (lowest is not None and v < lowest):
            raise ConfigError(f"{at(f)}: {v!r} must be "
                              f"{'positive' if lowest != 0 else '0 or more'}")
    if not isinstance(s.extra_body, dict):
        raise ConfigError(f"{at('extra_body')}: a mapping of extra JSON fields, got {s.extra_body!r}")


def api_identity(s: ApiSettings, environ: Mapping[str, str] = os.environ) -> str:
    """Where answers come from, for cache keys: base URL + model. No key material.

    User info and query strings are dropped from the URL: some endpoints carry credentials there.
    """
    base = s.base_url or environ.get(DEFAULT_BASE_URL_ENV) or ""
    parts = urlsplit(base)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    base = urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))
    return f"{base}|{s.model}"


def resolve_api_key(s: ApiSettings, environ: Mapping[str, str] = os.environ) -> Optional[str]:
    """The key from the environment variable ``s`` names (None when unset). Never log it."""
    return environ.get(s.api_key_env or DEFAULT_API_KEY_ENV)


def api_settings_from_dict(d: Mapping[str, Any], key: str) -> ApiSettings:
    """Build settings from a YAML mapping; unknown keys get one line naming them."""
    known = set(ApiSettings.__dataclass_fields__)
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}: unknown key (accepted: {', '.join(sorted(known))})")
    return ApiSettings(**dict(d))
