"""One OpenAI-compatible endpoint behind one object: the API judge's and API teacher's backend.

YAML: a judge's or teacher's ``type: api`` block (:class:`fnsft.actors.api_settings.ApiSettings`).
:class:`ApiClient` wraps the official ``openai.OpenAI`` client and adds what a training run needs:

- a concurrency cap (a thread pool of ``max_concurrency``) and a requests-per-minute limiter,
  shared by every caller of the object (make it ONE Ray actor per endpoint per run with
  :func:`make_api_actor`, so all workers share one cap, one limit and one budget);
- retries of 408, 409, 429 and 5xx answers, timeouts and dropped connections, bounded in number
  (``max_retries``), per server wait (``Retry-After`` capped at ``max_retry_after_s``) and in
  total time per request (``retry_budget_s``): :mod:`fnsft.actors.api_retry`;
- a per-attempt timeout; a failed request comes back with ``error`` set and no text: callers
  mask it, never score it 0;
- the :class:`~fnsft.actors.call_cache.CallCache` (answers only: never errors, never empty
  replies), so reruns and resumed runs never pay twice and never keep an outage's non-answers;
- budgets that count what is really paid for: ``max_calls`` (every attempt of a request, its
  retries included, costs one call per choice asked, ``n``) and ``max_total_tokens`` (prompt +
  completion tokens as the endpoint reports them); once one is spent the next request is not
  sent and :class:`fnsft.errors.BudgetExhausted` is raised, after every answer already received
  is cached;
- token usage, latency, retry counts and waits (:meth:`ApiClient.stats`).

The API key is read from the environment variable the settings name and never logged or stored.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, Optional

from fnsft.actors.api_retry import RetryClock
from fnsft.actors.api_settings import ApiSettings, api_identity, resolve_api_key
from fnsft.actors.call_cache import CallCache, cache_key
from fnsft.errors import BudgetExhausted, StageError

REQUEST_KEYS = {"messages", "max_tokens", "temperature", "n", "logprobs", "top_logprobs", "seed",
                "cache_extra", "top_p", "stop", "extra_body"}
# Local servers (vLLM, llama.cpp) ignore the key, but the openai client refuses to start without one.
_NO_KEY = "no-key"
# Answers that no retry or other request can fix: a wrong key, endpoint or model name.
_FATAL_STATUS = (401, 403, 404)


class _RateLimiter:
    """Spaces request starts ``60 / requests_per_minute`` seconds apart (a token bucket of one),
    so no 60-second window ever holds more than ``requests_per_minute`` starts."""

    def __init__(self, requests_per_minute: int):
        self.interval = 60.0 / requests_per_minute
        self._next = time.monotonic()
        self._lock = threading.Lock()
        self.waited_s = 0.0

    def acquire(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
            self.waited_s += start - now
        if start > now:
            time.sleep(start - now)


class ApiClient:
    """Batched chat completions against one endpoint, with cap, limiter, cache and budget.

    Args:
        settings: the endpoint (already checked with ``check_api_settings``).
        cache_path: jsonl cache under the stage's output folder; None: no cache.
        budget_key: the YAML key named when the budget is spent (e.g.
            ``stage_configs.rlaif.judge.max_judge_calls``).
        api_key: the key itself, when the caller resolved it already (``make_api_actor`` does, so
            an actor on another node needs no environment variable). Default: from the environment.

    Plain Python and thread-safe: use it in-process, or as a threaded Ray actor.
    """

    def __init__(self, settings: ApiSettings, cache_path: Optional[str] = None,
                 budget_key: str = "max_calls", api_key: Optional[str] = None):
        import openai

        self.settings = settings
        self.budget_key = budget_key
        self.identity = api_identity(settings)
        self._key = api_key or resolve_api_key(settings) or _NO_KEY
        # Retries are ours (_call): the client's own would honour any Retry-After up to 2 min
        # per retry, with no bound on the request's total time.
        self._client = openai.OpenAI(api_key=self._key, base_url=settings.base_url,
                                     max_retries=0, timeout=settings.timeout_s)
        self._pool = ThreadPoolExecutor(max_workers=settings.max_concurrency,
                                        thread_name_prefix="fnsft-api")
        self._limiter = _RateLimiter(settings.requests_per_minute) if settings.requests_per_minute else None
        self.cache = CallCache(cache_path) if cache_path else None
        self._lock = threading.Lock()
        self._n = {"calls": 0, "cache_hits": 0, "errors": 0, "retries": 0, "retry_after_capped": 0,
                   "retry_wait_s": 0.0, "prompt_tokens": 0, "completion_tokens": 0}
        self._latency_sum = 0.0

    # ---- keys and budget -------------------------------------------------------------------
    def request_key(self, request: dict) -> str:
        """Cache key of one request: endpoint identity + everything sent + ``cache_extra``."""
        r = _normalise(request)
        return cache_key(self.identity, r["messages"], r["max_tokens"], r["temperature"], r["n"],
                         r["logprobs"], r["top_logprobs"], r["seed"], r["top_p"], r["stop"],
                         {**self.settings.extra_body, **r["extra_body"]}, r["cache_extra"])

    def _reserve_call(self, n: int) -> Optional[str]:
        """Book the first attempt of a request with ``n`` choices; the name of the spent budget
        (``max_calls`` / ``max_total_tokens``) when it cannot be sent. Retries are booked when
        they are known (:meth:`_call`): a budget may be overshot by the retries in flight."""
        s = self.settings
        with self._lock:
            if s.max_calls is not None and self._n["calls"] + n > s.max_calls:
                return "max_calls"
            if s.max_total_tokens is not None and self._tokens() >= s.max_total_tokens:
                return "max_total_tokens"
            self._n["calls"] += n
            return None

    def _tokens(self) -> int:
        return self._n["prompt_tokens"] + self._n["completion_tokens"]

    # ---- the public call -------------------------------------------------------------------
    def chat(self, requests: list[dict]) -> list[dict]:
        """Answer ``requests`` (see ``REQUEST_KEYS``), in order; identical requests are asked once.

        A result: ``texts`` (one per choice; ``[]`` on error), ``finish_reasons``,
        ``top_logprobs`` (first choice: per generated token a list of ``{"token", "logprob"}``,
        or None), ``error`` (None, or why the request failed after retries), ``cached``,
        ``usage`` (``prompt_tokens``, ``completion_tokens``), ``latency_s``.

        Raises:
            BudgetExhausted: ``max_calls`` spent before every request could be asked; the answers
                received are cached first.
            StageError: the endpoint refused the key, the URL or the model (401/403/404).
        """
        results: list[Optional[dict]] = [None] * len(requests)
        pending: dict[str, list[int]] = {}
        for i, req in enumerate(requests):
            key = self.request_key(req)
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is not None:
                results[i] = {**hit, "cached": True}
                with self._lock:
                    self._n["cache_hits"] += 1
            else:
                pending.setdefault(key, []).append(i)

        futures, unasked, spent = {}, 0, None
        for key, idx in pending.items():
            spent = self._reserve_call(_normalise(requests[idx[0]])["n"]) if not unasked else spent
            if spent:
                unasked += 1
                continue
            futures[self._pool.submit(self._call, requests[idx[0]])] = key
        fatal = None
        for fut in as_completed(futures):
            key = futures[fut]
            res, fatal_here = fut.result()
            fatal = fatal or fatal_here
            if res["error"] is None and any(res["texts"]) and self.cache is not None:
                self.cache.put(key, res)
            for i in pending[key]:
                results[i] = {**res, "cached": False}
        if fatal:
            raise StageError(fatal)
        if unasked:
            where = f" and cached in {self.cache.path}" if self.cache is not None else ""
            key = self.budget_key if spent == "max_calls" else budget_key_for(self.budget_key, spent)
            what = (f"{self.settings.max_calls} API calls" if spent == "max_calls"
                    else f"{self.settings.max_total_tokens} tokens")
            raise BudgetExhausted(
                f"{key}: the budget of {what} is spent ({unasked} requests not asked; the answers "
                f"received are kept{where}); raise {key} and rerun: cached answers are not paid for again")
        return results  # type: ignore[return-value]

    def _call(self, request: dict) -> tuple[dict, Optional[str]]:
        """One request through the openai client (its retries included). Never raises."""
        import openai

        r = _normalise(request)
        kwargs: dict[str, Any] = {
            "model": self.settings.model, "messages": r["messages"], "max_tokens": r["max_tokens"],
            "temperature": r["temperature"], "n": r["n"], "seed": r["seed"], "top_p": r["top_p"],
            "stop": r["stop"]}
        if r["logprobs"]:
            kwargs["logprobs"] = True
            if r["top_logprobs"]:
                kwargs["top_logprobs"] = r["top_logprobs"]
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        extra = {**self.settings.extra_body, **r["extra_body"]}
        if extra:
            kwargs["extra_body"] = extra
        if self._limiter is not None:
            self._limiter.acquire()
        t0 = time.monotonic()
        res = {"texts": [], "finish_reasons": [], "top_logprobs": None, "error": None,
               "usage": {"prompt_tokens": 0, "completion_tokens": 0}, "latency_s": 0.0}
        st = self.settings
        clock = RetryClock(st.max_retries, st.max_retry_after_s, st.retry_budget_s, started=t0)
        fatal, failure, why = None, None, ""
        while True:
            headers = None
            try:
                raw = self._client.chat.completions.with_raw_response.create(
                    **kwargs, timeout=max(0.001, min(st.timeout_s, clock.left_s())))
                _fill(res, raw.parse())
                res["texts"] = [self._scrub(t) for t in res["texts"]]
                failure = None
                break
            except openai.APITimeoutError:
                failure = ("timeout: no answer within timeout_s=" f"{st.timeout_s}", "")
            except openai.APIConnectionError as e:
                failure = ("connection failed", f": {e}")
            except openai.APIStatusError as e:
                code = e.status_code
                failure = (f"HTTP {code}", f": {e.message}")
                if code in _FATAL_STATUS:
                    fatal = (f"api endpoint {self.identity.split('|')[0] or '(OPENAI_BASE_URL)'} "
                             f"refused the request (HTTP {code}): check base_url, model "
                             f"{st.model!r} and the key in {st.api_key_env or 'OPENAI_API_KEY'}")
                if not (code in (408, 409, 429) or code >= 500):
                    break  # a 400 or another answer that asking again cannot change
                headers = e.response.headers
            except Exception as e:  # garbage on the wire (bad JSON, wrong shape): this item fails
                res["error"] = f"unreadable answer: {type(e).__name__}: {e}"
                break
            wait = clock.next_wait(headers)
            if wait is None:  # max_retries used, or the wait would end past the budget
                why = "" if clock.retries >= st.max_retries else f", retry_budget_s={st.retry_budget_s:g} spent"
                break
            clock.wait(wait)
        if failure is not None:
            res["error"] = f"{failure[0]} after {clock.retries} retries{why}{failure[1]}"
        res["latency_s"] = time.monotonic() - t0
        if res["error"] is not None:
            res["error"] = self._scrub(res["error"])[:500]
        with self._lock:
            self._n["retries"] += clock.retries
            self._n["retry_after_capped"] += clock.capped
            self._n["retry_wait_s"] += clock.waited_s
            self._n["calls"] += clock.retries * r["n"]  # each retry is one more paid attempt
            self._n["errors"] += res["error"] is not None
            self._n["prompt_tokens"] += res["usage"]["prompt_tokens"]
            self._n["completion_tokens"] += res["usage"]["completion_tokens"]
            self._latency_sum += res["latency_s"]
        return res, fatal

    def _scrub(self, text: str) -> str:
        # Servers sometimes echo the key (error bodies, a prompt-injected answer): never let it
        # reach logs, results or the cache file.
        return text.replace(self._key, "***") if self._key != _NO_KEY else text

    # ---- accounting --------------------------------------------------------------------------
    def stats(self) -> dict:
        """Counters since start: ``calls`` (paid attempts, retries included, ``n`` per request),
        ``cache_hits``, ``errors``, ``retries``, ``retry_after_capped`` (server waits cut to
        ``max_retry_after_s``), ``retry_wait_s`` (time spent waiting to retry), ``prompt_tokens``,
        ``completion_tokens``, ``total_tokens``, ``mean_latency_s``, ``rate_limit_wait_s``,
        ``budget_left`` (None without ``max_calls``), ``tokens_left`` (None without
        ``max_total_tokens``)."""
        with self._lock:
            out: dict[str, Any] = dict(self._n)
            out["total_tokens"] = self._tokens()
            out["mean_latency_s"] = self._latency_sum / out["calls"] if out["calls"] else 0.0
        out["rate_limit_wait_s"] = self._limiter.waited_s if self._limiter else 0.0
        m, t = self.settings.max_calls, self.settings.max_total_tokens
        out["budget_left"] = None if m is None else max(0, m - out["calls"])
        out["tokens_left"] = None if t is None else max(0, t - out["total_tokens"])
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()
        if self.cache is not None:
            self.cache.close()


def budget_key_for(calls_key: str, budget: str) -> str:
    """The YAML key of ``budget`` beside the calls budget's key (``judge.api.max_calls`` ->
    ``judge.api.max_total_tokens``): messages name the key the user sets."""
    head, _, last = calls_key.rpartition(".")
    return f"{head}.{budget}" if head and last.startswith("max_") else budget


def _normalise(request: dict) -> dict:
    unknown = set(request) - REQUEST_KEYS
    if unknown or "messages" not in request:
        raise ValueError(f"chat request: unknown keys {sorted(unknown)} or no 'messages' "
                         f"(accepted: {sorted(REQUEST_KEYS)})")
    return {"messages": request["messages"], "max_tokens": request.get("max_tokens"),
            "temperature": request.get("temperature"), "n": int(request.get("n") or 1),
            "logprobs": bool(request.get("logprobs", False)),
            "top_logprobs": request.get("top_logprobs"), "seed": request.get("seed"),
            "top_p": request.get("top_p"), "stop": request.get("stop"),
            "extra_body": dict(request.get("extra_body") or {}),
            "cache_extra": request.get("cache_extra")}


def _fill(res: dict, resp: Any) -> None:
    """Copy texts, finish reasons, first-choice top log-probs and usage from a ChatCompletion."""
    choices = getattr(resp, "choices", None)
    if not choices:
        raise ValueError(f"no choices in the answer: {str(resp)[:200]}")
    res["texts"] = [c.message.content or "" for c in choices]
    res["finish_reasons"] = [c.finish_reason for c in choices]
    lp = getattr(choices[0], "logprobs", None)
    if lp is not None and lp.content:
        # Each generated token: its alternatives, or the token itself when none were asked for.
        res["top_logprobs"] = [
            [{"token": a.token, "logprob": float(a.logprob)} for a in (t.top_logprobs or [])]
            or [{"token": t.token, "logprob": float(t.logprob)}] for t in lp.content]
    usage = getattr(resp, "usage", None)
    if usage is not None:
        res["usage"] = {"prompt_tokens": int(usage.prompt_tokens or 0),
                        "completion_tokens": int(usage.completion_tokens or 0)}


def chat_through(client_or_actor: Any, requests: list[dict]) -> list[dict]:
    """``chat(requests)`` on an :class:`ApiClient` or on the actor from :func:`make_api_actor`.

    Through Ray, a :class:`~fnsft.errors.FnsftError` raised in the actor (``BudgetExhausted``,
    the fatal ``StageError``) arrives wrapped in a ``RayTaskError`` whose text is a traceback; it
    is re-raised here as the original error, so the CLI prints its one line.
    """
    if isinstance(client_or_actor, ApiClient):
        return client_or_actor.chat(requests)
    import ray

    try:
        return ray.get(client_or_actor.chat.remote(requests))
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, (BudgetExhausted, StageError)):
            raise type(cause)(*cause.args) from None
        raise


def make_api_actor(settings: ApiSettings, cache_path: Optional[str] = None, name: Optional[str] = None,
                   budget_key: str = "max_calls", namespace: Optional[str] = None):
    """ONE named Ray actor per endpoint per run (``get_if_exists``): every worker that asks for the
    same ``name`` shares its concurrency cap, rate limit, budget and cache.

    Give ``name`` per run (e.g. ``f"{run_id}-judge-api"``) so runs sharing a cluster stay apart.
    The key and ``OPENAI_BASE_URL`` are resolved here, in the caller's environment, so the actor
    works on nodes that lack the variables; the actor sits on the caller's node (soft), where
    the stage's output folder and cache are. It takes no CPU: it only waits on the network.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if settings.base_url is None and os.environ.get("OPENAI_BASE_URL"):
        settings = dataclasses.replace(settings, base_url=os.environ["OPENAI_BASE_URL"])
    name = name or "fnsft-api-" + cache_key(api_identity(settings))[:12]
    node = ray.get_runtime_context().get_node_id()
    actor_cls = ray.remote(ApiClient)
    return actor_cls.options(
        name=name, get_if_exists=True, namespace=namespace, num_cpus=0,
        # Threaded actor: several workers' chat() calls run at once and share the pool's cap.
        max_concurrency=max(4, 2 * settings.max_concurrency),
        scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=True),
    ).remote(settings, cache_path, budget_key, resolve_api_key(settings))
