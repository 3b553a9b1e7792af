"""``teacher_model_type: api`` — any OpenAI-compatible endpoint writes the rationales.

``teacher_model_path`` is the model name at the endpoint (the guide's ``"gpt-4"``);
``teacher_base_url`` and ``api_key_env`` (the NAME of the variable holding the key) default to
the openai client's ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``, so the guide's Example 2 runs
unchanged against any endpoint. ``teacher_api`` holds the shared client's other settings
(``max_concurrency``, ``requests_per_minute``, ``max_retries``, ``timeout_s``, ``max_calls``, ``max_total_tokens``,
``extra_body``). Calls go through ONE Ray actor per endpoint
(:func:`fnsft.actors.api_client.make_api_actor`): concurrency cap, rate limit, retries honouring
``Retry-After``, timeouts, token usage. Each question is one request with ``n`` choices.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Optional

from fnsft.actors.api_settings import ApiSettings, api_identity, api_settings_from_dict
from fnsft.teachers.base import Teacher

log = logging.getLogger("fnsft")


def teacher_api_settings(model: str, base_url: Optional[str], api_key_env: Optional[str], extra: dict,
                         key: str = "teacher_api") -> ApiSettings:
    """The endpoint's :class:`ApiSettings` from the stage's teacher keys."""
    s = api_settings_from_dict(extra or {}, key)
    return dataclasses.replace(s, model=model, base_url=base_url or s.base_url, api_key_env=api_key_env or s.api_key_env)


class ApiTeacher(Teacher):
    kind = "api"

    def __init__(self, model: str, base_url: Optional[str] = None, api_key_env: Optional[str] = None,
                 settings: Optional[dict] = None, batch_size: int = 8, cache_dir: Optional[str] = None,
                 in_process: Optional[bool] = None, **kwargs):
        super().__init__(**kwargs)
        self.settings = teacher_api_settings(model, base_url, api_key_env, settings or {})
        self.batch_size = max(batch_size, self.settings.max_concurrency)
        # The client's own cache keeps every answer it paid for, even when a batch is cut short
        # (budget spent, a crash): the teacher cache above it is filled per batch.
        self.cache_path = os.path.join(cache_dir, "api_cache.jsonl") if cache_dir else None
        self.in_process = in_process
        self._client: Any = None
        self._actor: Any = None

    @property
    def identity(self) -> str:
        return f"api:{api_identity(self.settings)}"

    def _chat(self, requests: list[dict]) -> list[dict]:
        import ray

        in_process = self.in_process if self.in_process is not None else not ray.is_initialized()
        if in_process:
            if self._client is None:
                from fnsft.actors.api_client import ApiClient

                self._client = ApiClient(self.settings, self.cache_path, budget_key="teacher_api.max_calls")
            return self._client.chat(requests)
        if self._actor is None:
            from fnsft.actors.api_client import make_api_actor

            self._actor = make_api_actor(self.settings, self.cache_path, budget_key="teacher_api.max_calls",
                                         name=f"fnsft-cot-teacher-{os.getpid()}-{id(self):x}")
        return ray.get(self._actor.chat.remote(requests))

    def _complete(self, prompts, questions, hints, n, temperature, max_new_tokens):
        requests = [{"messages": [{"role": "user", "content": p}], "n": n, "temperature": temperature,
                     "max_tokens": max_new_tokens} for p in prompts]
        out = []
        for res in self._chat(requests):
            if res.get("error") or len(res.get("texts") or []) < n:
                why = res.get("error") or f"the endpoint returned {len(res.get('texts') or [])} of {n} choices"
                out.append([{"text": None, "finish_reason": "error", "error": why} for _ in range(n)])
                continue
            out.append([{"text": t, "finish_reason": "length" if f == "length" else "stop"}
                        for t, f in zip(res["texts"][:n], res["finish_reasons"][:n])])
        return out

    def stats(self) -> dict:
        import ray

        if self._client is not None:
            return self._client.stats()
        if self._actor is not None:
            return ray.get(self._actor.stats.remote())
        return {}

    def close(self) -> None:
        import ray

        if self._client is not None:
            self._client.close()
            self._client = None
        if self._actor is not None:
            ray.kill(self._actor)
            self._actor = None
