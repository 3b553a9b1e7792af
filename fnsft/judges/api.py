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
        """The endpoint's one Ray actor (shared cap, rate limit, budget) when Ray is up, else in-process."""
        if self._client is None:
            import ray

            from fnsft.actors.api_client import ApiClient, make_api_actor
            from fnsft.actors.call_cache import cache_key

            if ray.is_initialized():
                # Named per judge cache (per run and stage), so runs sharing a cluster stay apart.
                name = f"fnsft-{self.name}-api-" + cache_key(self.identity, self.cache_path)[:12]
                self._client = make_api_actor(self.api, None, name=name, budget_key="judge.api.max_calls")
            else:
                self._client = ApiClient(self.api, None, budget_key="judge.api.max_calls")
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
        if hasattr(client.chat, "remote"):
            import ray

            results = ray.get(client.chat.remote(requests))
        else:
            results = client.chat(requests)
        out = []
        for r in results:
            usage = r.get("usage") or {}
            tokens = int(usage.get("prompt_tokens", 0) or 0) + int(usage.get("completion_tokens", 0) or 0)
            latency = 0.0 if r.get("cached") else float(r.get("latency_s", 0.0) or 0.0)
            if r.get("error"):
                out.append(Outcome(None, error=str(r["error"]), tokens=tokens, latency_s=latency))
                continue
            text = (r.get("texts") or [""])[0]
            value = parse_reply(kind, text, self.score_range, token_alternatives(r.get("top_logprobs")))
            out.append(Outcome(value, tokens=tokens, latency_s=latency, reply=text or ""))
        return out


def token_alternatives(top_logprobs: Optional[list]) -> Optional[list[dict[str, float]]]:
    """The client's per-token ``[{"token", "logprob"}, ...]`` as ``{token: logprob}`` per token."""
    if not top_logprobs:
        return None
    return [{a["token"]: a["logprob"] for a in alts} for alts in top_logprobs]
