"""``judge.type: api`` — judge prompts sent to any OpenAI-compatible endpoint through the shared
client (:mod:`fnsft.actors.api_client`: one Ray actor per endpoint per run owns the key, the
concurrency cap, the rate limit, retries honouring ``Retry-After``, timeouts, the ``max_calls``
and ``max_total_tokens`` budgets and token accounting).

Greedy (``temperature: 0``) replies of ``max_tokens``; ``logprobs``/``top_logprobs`` are asked for
and used when the server returns them (a probability instead of a hard letter). A failed call
is masked and counted, never turned into a verdict.
"""

from __future__ import annotations

from typing import Any, Optional

from fnsft.judges.base import Outcome
from fnsft.judges.parsing import parse_reply


class ApiBackend:
    """Holds the endpoint's client: the run's API actor when Ray is up (started by the run's
    driver, where the backend is built, so the key comes from the run's own environment, and
    its handle travels with copies of the backend), else an in-process client.

    ``actor_name``: the actor's name, per run and stage (``fnsft-<run id>-<stage>-judge-api``).
    """

    def __init__(self, api_settings, score_range, max_tokens: int = 8, top_logprobs: int = 10,
                 actor_name: str = "fnsft-judge-api"):
        import ray

        from fnsft.actors.api_settings import api_identity

        self.api = api_settings
        self.score_range = list(score_range)
        self.max_tokens, self.top_logprobs = max_tokens, top_logprobs
        self.identity = f"api:{api_identity(api_settings)}"
        self.actor = None
        self._client = None  # the in-process client (no Ray), never pickled
        if ray.is_initialized():
            from fnsft.actors.api_client import make_api_actor

            self.actor = make_api_actor(self.api, None, name=actor_name, budget_key="judge.api.max_calls")

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_client"] = None
        return state

    def client(self):
        """The run's API actor (one key, cap, rate limit and budget for all its copies), else in-process."""
        if self.actor is not None:
            return self.actor
        if self._client is None:
            from fnsft.actors.api_client import ApiClient

            self._client = ApiClient(self.api, None, budget_key="judge.api.max_calls")
        return self._client

    def close(self) -> None:
        """Stop the API actor this backend started (its copies in other processes judge no more)."""
        if self.actor is not None:
            import ray

            ray.kill(self.actor)
            self.actor = None

    def request(self, text: str) -> dict:
        req: dict[str, Any] = {"messages": [{"role": "user", "content": text}], "max_tokens": self.max_tokens,
                               "temperature": 0.0}
        if self.top_logprobs:
            req.update(logprobs=True, top_logprobs=self.top_logprobs)
        return req

    def judge(self, items: list[dict], kind: str) -> list[Outcome]:
        from fnsft.actors.api_client import chat_through

        results = chat_through(self.client(), [self.request(it["text"]) for it in items])
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
