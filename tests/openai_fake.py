"""A small local server that speaks the OpenAI chat-completions wire format, scriptable per test.

Use it through the ``fake_openai`` fixture (tests/conftest.py)::

    def test_x(fake_openai):
        fake_openai.answer = lambda body: "A"                 # text (or a dict, see below)
        fake_openai.push("429", "429", "500")                 # the next 3 requests fail so
        settings = ApiSettings(model="fake", base_url=fake_openai.base_url)

``answer(body)`` gets the request JSON and returns the reply text, or a dict with ``text`` and
optionally ``finish_reason``, ``top_logprobs`` (per token: ``{token: logprob}``), ``texts`` (one
per choice when ``n > 1``). Faults pushed with :meth:`FakeOpenAI.push` are used by the next
requests in arrival order: ``"429"`` (with ``Retry-After: <retry_after>``, 1 unless set), ``"500"``, ``"401"``,
``"garbage"`` (a 200 whose body is not JSON), ``"slow"`` (sleeps ``slow_s`` before answering).
``fault_for(body)`` picks a fault by content (or None) when none is queued: the same request
fails whatever order the client's threads send in. ``delay_s`` delays every answer (benchmarks). The server records every request (body, headers,
arrival time) and the most requests it had in flight at once.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional, Union


def _default_answer(body: dict) -> str:
    # Echo the last user message: tests can tell answers apart.
    for m in reversed(body.get("messages", [])):
        if m.get("role") == "user":
            return f"echo: {m.get('content')}"
    return "echo"


def _tokens(text: str) -> list[str]:
    # One "token" per whitespace-separated piece, spaces kept (like BPE's leading-space tokens).
    out, cur = [], ""
    for ch in text:
        if ch == " " and cur:
            out.append(cur)
            cur = ""
        cur += ch
    return out + ([cur] if cur else [])


class FakeOpenAI:
    """The server (127.0.0.1, a free port). ``base_url`` ends in ``/v1``; :meth:`close` stops it."""

    def __init__(self, model: str = "fake-model"):
        self.model = model
        self.answer: Callable[[dict], Union[str, dict]] = _default_answer
        self.delay_s = 0.0
        self.slow_s = 5.0
        self.retry_after = "1"  # the Retry-After header of a "429"
        self.requests: list[dict] = []  # {"body", "headers", "t", "fault"}
        self.in_flight = 0
        self.max_in_flight = 0
        self._faults: list[str] = []
        self.fault_for: Callable[[dict], Optional[str]] = lambda body: None
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)  # shutdown() waits up to one poll
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def push(self, *faults: str) -> None:
        """Faults for the next requests, in order: "429", "500", "401", "garbage", "slow"."""
        with self._lock:
            self._faults.extend(faults)

    @property
    def count(self) -> int:
        """Requests received (retries included)."""
        with self._lock:
            return len(self.requests)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ---- the wire format -----------------------------------------------------------------------
    def _completion(self, body: dict) -> dict:
        n = int(body.get("n") or 1)
        out = self.answer(body)
        out = {"text": out} if isinstance(out, str) else dict(out)
        texts = out.get("texts") or [out["text"]] * n
        choices = []
        for i, text in enumerate(texts[:n]):
            choice: dict[str, Any] = {"index": i, "message": {"role": "assistant", "content": text},
                                      "finish_reason": out.get("finish_reason", "stop"), "logprobs": None}
            if body.get("logprobs"):
                k = int(body.get("top_logprobs") or 0)
                given = out.get("top_logprobs")
                content = []
                for j, tok in enumerate(_tokens(text)):
                    alts = (given[j] if given and j < len(given) else {tok: -0.1, "?": -2.5})
                    top = sorted(alts.items(), key=lambda kv: -kv[1])[:k]
                    content.append({"token": tok, "logprob": alts.get(tok, -0.1), "bytes": None,
                                    "top_logprobs": [{"token": t, "logprob": lp, "bytes": None}
                                                     for t, lp in top]})
                choice["logprobs"] = {"content": content}
            choices.append(choice)
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        completion_tokens = sum(len(_tokens(t)) for t in texts[:n])
        return {"id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion",
                "created": int(time.time()), "model": body.get("model", self.model), "choices": choices,
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}}

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _send(self, code: int, payload: Union[dict, bytes], headers: Optional[dict] = None):
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out first
                    pass

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [
                        {"id": fake.model, "object": "model", "owned_by": "fake"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with fake._lock:
                    fault = fake._faults.pop(0) if fake._faults else fake.fault_for(body)
                    fake.requests.append({"body": body, "headers": {k.lower(): v for k, v in self.headers.items()},
                                          "t": time.monotonic(), "fault": fault})
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    self._answer(body, fault)
                finally:
                    with fake._lock:
                        fake.in_flight -= 1

            def _answer(self, body: dict, fault: Optional[str]):
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                if fault == "429":
                    return self._send(429, {"error": {"message": "rate limited", "type": "rate_limit"}},
                                      {"Retry-After": fake.retry_after})
                if fault == "500":
                    return self._send(500, {"error": {"message": "internal error"}})
                if fault == "401":
                    return self._send(401, {"error": {"message": "bad key"}})
                if fault == "slow":
                    time.sleep(fake.slow_s)
                if fake.delay_s:
                    time.sleep(fake.delay_s)
                if fault == "garbage":
                    return self._send(200, b"<html>not json at all")
                self._send(200, fake._completion(body))

        return Handler
