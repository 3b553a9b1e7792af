"""``judge.type: api`` — judge prompts sent to any OpenAI-compatible endpoint through the shared
client (:mod:`fnsft.actors.api_client`: one Ray actor per endpoint owns the concurrency cap, the
rate limit, retries honouring ``Retry-After``, timeouts and token accounting).

Greedy (``temperature: 0``) replies of ``max_tokens``; ``logprobs``/``top_logprobs`` are asked for
and used when the server returns them (a probability instead of a hard letter). A failed call
is masked and counted, never turned into a verdict.
"""

from __future__ import annotations

from typing import Any, Optional

from fnsft.judges.base import Outcome
from fnsft.judges.parsing import parse_reply


def _get(obj: Any, name: str, default=None):
    return obj.get(name, default) if isinstance(obj, dict) else getattr(obj, name, default)


class ApiBackend:
    """Holds the endpoint's client (the named API actor when Ray is up, else an in-process client)."""

    def __init__(self, api_settings, score_range, max_tokens: int = 8, top_logprobs: int = 10,
                 cache_path: Optional[str] = None, name: str = "judge"):
        from fnsft.actors.api_settings import api_identity

        self.api = api_settings
        self.score_range = list(score_range)
        self.max_tokens, self.top_logprobs = max_tokens, top_logprobs
        self.cache_path, self.name = cache_path, name
        self.identity = f"api:{api_identity(api_settings)}"
        self._client = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_client"] = None
        return state

    def client(self):
        if self._client is None:
            from fnsft.actors.api_client import make_api_actor

            self._client = make_api_actor(self.api, self.cache_path)
        return self._client

    def request(self, text: str) -> dict:
        req: dict[str, Any] = {"messages": [{"role": "user", "content": text}], "max_tokens": self.max_tokens,
                               "temperature": 0.0}
        if self.top_logprobs:
            req.update(logprobs=True, top_logprobs=self.top_logprobs)
        return req

    def judge(self, items: list[dict], kind: str) -> list[Outcome]:
        client = self.client()
        requests = [self.request(it["text"]) for it in items]
        results = client.chat.remote(requests) if hasattr(client.chat, "remote") else client.chat(requests)
        if hasattr(results, "hex") or type(results).__name__ == "ObjectRef":
            import ray

            results = ray.get(results)
        out = []
        for r in results:
            error = _get(r, "error")
            usage = _get(r, "usage") or {}
            tokens = int(_get(usage, "total_tokens", 0) or 0)
            if error:
                out.append(Outcome(None, error=str(error), tokens=tokens, latency_s=float(_get(r, "latency_s", 0) or 0)))
                continue
            texts = _get(r, "texts") or [_get(r, "text", "")]
            text = texts[0] if texts else ""
            lps = _get(r, "top_logprobs")
            if lps and isinstance(lps, list) and lps and isinstance(lps[0], list):
                lps = lps[0]  # one list per choice
            value = parse_reply(kind, text, self.score_range, lps if self.top_logprobs else None)
            out.append(Outcome(value, tokens=tokens, latency_s=float(_get(r, "latency_s", 0) or 0), reply=text or ""))
        return out
