"""The shared OpenAI-compatible client against a local fake server: parsing, retries, timeouts,
cache, budget, concurrency cap, rate limit, key hygiene, env defaults, settings errors."""

from __future__ import annotations

import json
import os
import time

import pytest

from fnsft.actors.api_client import ApiClient, make_api_actor
from fnsft.actors.api_settings import ApiSettings, api_identity, check_api_settings
from fnsft.actors.call_cache import CallCache, cache_key
from fnsft.errors import BudgetExhausted, ConfigError, FnsftError, StageError


def ask(text: str, **kw) -> dict:
    return {"messages": [{"role": "user", "content": text}], "max_tokens": 8, "temperature": 0.0, **kw}


def client(fake, tmp_path=None, **kw) -> ApiClient:
    kw.setdefault("max_retries", 2)
    kw.setdefault("timeout_s", 10.0)
    settings = ApiSettings(model="fake-model", base_url=fake.base_url, **kw)
    return ApiClient(settings, str(tmp_path / "calls.jsonl") if tmp_path else None)


def test_results_parsed_in_order_with_logprobs_usage_and_n(fake_openai):
    fake_openai.answer = lambda body: {"text": "7 out of 10", "finish_reason": "length",
                                       "top_logprobs": [{"7": -0.2, "8": -1.8, "6": -3.0}]}
    c = client(fake_openai)
    out = c.chat([ask("a", logprobs=True, top_logprobs=2), ask("b", n=2), ask("a", logprobs=True, top_logprobs=2)])
    assert [r["error"] for r in out] == [None] * 3
    assert out[0]["texts"] == ["7 out of 10"] and out[0]["finish_reasons"] == ["length"]
    assert out[0]["top_logprobs"][0] == [{"token": "7", "logprob": -0.2}, {"token": "8", "logprob": -1.8}]
    assert len(out[0]["top_logprobs"]) == 4  # one entry per generated token
    assert out[1]["texts"] == ["7 out of 10"] * 2 and out[1]["top_logprobs"] is None
    assert out[0]["usage"]["completion_tokens"] == 4 and out[0]["usage"]["prompt_tokens"] == 1
    assert out[0]["latency_s"] > 0 and out[0]["cached"] is False
    # The duplicate request was asked once.
    assert fake_openai.count == 2
    body = fake_openai.requests[0]["body"]
    assert body["model"] == "fake-model" and body["max_tokens"] == 8
    s = c.stats()
    assert s["calls"] == 3 and s["errors"] == 0 and s["completion_tokens"] == 4 + 8  # n=2 spends two


def test_429_with_retry_after_is_retried_and_waits(fake_openai):
    fake_openai.push("429", "429")
    c = client(fake_openai, max_retries=3)
    out = c.chat([ask("x")])
    assert out[0]["error"] is None and out[0]["texts"] == ["echo: x"]
    assert fake_openai.count == 3
    t = [r["t"] for r in fake_openai.requests]
    # Retry-After: 1 was honoured (the client's own backoff alone would wait 0.5-1 s, then 1-2 s).
    assert t[1] - t[0] >= 0.95 and t[2] - t[1] >= 0.95
    assert c.stats()["retries"] == 2


def test_500_is_retried_then_exhausted_retries_give_an_error_entry(fake_openai):
    fake_openai.push("500")
    c = client(fake_openai, max_retries=1)
    assert c.chat([ask("x")])[0]["texts"] == ["echo: x"] and fake_openai.count == 2
    fake_openai.push("500", "500")
    out = c.chat([ask("y")])
    assert out[0]["texts"] == [] and "HTTP 500" in out[0]["error"] and fake_openai.count == 4


def test_slow_reply_past_timeout_is_an_error_and_the_rest_of_the_batch_is_fine(fake_openai, tmp_path):
    fake_openai.slow_s = 3.0
    fake_openai.fault_for = lambda body: "slow" if body["messages"][0]["content"] == "slow" else None
    c = client(fake_openai, tmp_path, timeout_s=0.5, max_retries=1, max_concurrency=4)
    out = c.chat([ask("a"), ask("slow"), ask("b")])
    assert out[0]["texts"] == ["echo: a"] and out[2]["texts"] == ["echo: b"]
    assert out[1]["texts"] == [] and out[1]["error"].startswith("timeout")
    assert sum(r["body"]["messages"][0]["content"] == "slow" for r in fake_openai.requests) == 2
    # Failures are not cached: a rerun asks only for the failed one again.
    fake_openai.fault_for = lambda body: None
    c2 = client(fake_openai, tmp_path)
    before = fake_openai.count
    again = c2.chat([ask("a"), ask("slow"), ask("b")])
    assert fake_openai.count == before + 1 and again[1]["texts"] == ["echo: slow"]
    assert [r["cached"] for r in again] == [True, False, True]


def test_garbage_text_comes_back_as_text_and_a_garbage_body_as_an_error(fake_openai):
    fake_openai.answer = lambda body: "%%% I refuse ###"
    c = client(fake_openai)
    assert c.chat([ask("x")])[0]["texts"] == ["%%% I refuse ###"]
    fake_openai.push("garbage")
    out = c.chat([ask("y")])
    assert out[0]["texts"] == [] and out[0]["error"].startswith("unreadable answer")
    assert c.stats()["errors"] == 1


def test_cache_rerun_makes_zero_calls_and_survives_a_cut_last_line(fake_openai, tmp_path):
    batch = [ask(f"q{i}") for i in range(5)] + [ask("q0", cache_extra={"sample": 1})]
    first = client(fake_openai, tmp_path).chat(batch)
    assert fake_openai.count == 6  # cache_extra makes a distinct entry
    path = tmp_path / "calls.jsonl"
    with open(path, "a") as f:
        f.write('{"key": "abc", "val')  # a write cut short by a kill
    c = client(fake_openai, tmp_path)
    again = c.chat(batch)
    assert fake_openai.count == 6 and c.stats()["calls"] == 0 and c.stats()["cache_hits"] == 6
    assert [r["texts"] for r in again] == [r["texts"] for r in first]
    assert all(r["cached"] for r in again) and c.cache.dropped_lines == 1
    c.chat([ask("new")])  # appends cleanly after the dropped partial line
    assert len(CallCache(str(path))) == 7


def test_budget_stops_loudly_and_keeps_what_was_answered(fake_openai, tmp_path):
    settings = ApiSettings(model="fake-model", base_url=fake_openai.base_url, max_calls=3, max_concurrency=2)
    c = ApiClient(settings, str(tmp_path / "calls.jsonl"), budget_key="stage_configs.rlaif.judge.max_judge_calls")
    batch = [ask(f"q{i}") for i in range(5)]
    with pytest.raises(BudgetExhausted) as err:
        c.chat(batch)
    msg = str(err.value)
    assert isinstance(err.value, FnsftError) and "\n" not in msg
    assert msg.startswith("stage_configs.rlaif.judge.max_judge_calls:") and "2 requests not asked" in msg
    assert fake_openai.count == 3 and len(c.cache) == 3 and c.stats()["budget_left"] == 0
    # A rerun with a fresh budget pays only for the two missing answers.
    c2 = ApiClient(ApiSettings(model="fake-model", base_url=fake_openai.base_url, max_calls=2),
                   str(tmp_path / "calls.jsonl"))
    out = c2.chat(batch)
    assert fake_openai.count == 5 and sum(r["cached"] for r in out) == 3


def test_concurrency_cap_is_respected(fake_openai):
    fake_openai.delay_s = 0.3
    c = client(fake_openai, max_concurrency=3)
    out = c.chat([ask(f"q{i}") for i in range(9)])
    assert all(r["error"] is None for r in out)
    assert 2 <= fake_openai.max_in_flight <= 3


def test_requests_per_minute_spaces_request_starts(fake_openai):
    c = client(fake_openai, max_concurrency=4, requests_per_minute=300)  # one start per 0.2 s
    t0 = time.monotonic()
    c.chat([ask(f"q{i}") for i in range(5)])
    # The 5th request cannot start before 4 intervals have passed (a lower bound: a loaded
    # machine only delays arrivals further). Without the limiter all 4 threads start at once.
    assert max(r["t"] for r in fake_openai.requests) - t0 >= 0.79
    assert c.stats()["rate_limit_wait_s"] > 0.5


def test_api_key_is_sent_but_never_stored_or_reported(fake_openai, tmp_path, monkeypatch):
    secret = "sk-test-DO-NOT-STORE-12345"
    monkeypatch.setenv("MY_JUDGE_KEY", secret)
    settings = ApiSettings(model="fake-model", base_url=fake_openai.base_url, api_key_env="MY_JUDGE_KEY",
                           max_retries=1)
    check_api_settings(settings, "judge")
    c = ApiClient(settings, str(tmp_path / "calls.jsonl"))
    c.chat([ask("x", logprobs=True, top_logprobs=1)])
    assert fake_openai.requests[0]["headers"]["authorization"] == f"Bearer {secret}"
    fake_openai.answer = lambda body: {"text": f"your key is {secret}"}  # a server echoing it
    assert c.chat([ask("y")])[0]["texts"] == ["your key is ***"]
    fake_openai.push("500", "500")
    assert c.chat([ask("z")])[0]["error"].startswith("HTTP 500")
    assert secret not in (tmp_path / "calls.jsonl").read_text()
    assert secret not in json.dumps(c.stats()) and secret not in api_identity(settings)
    fake_openai.push("401")
    with pytest.raises(StageError) as err:
        c.chat([ask("w")])
    assert secret not in str(err.value) and "MY_JUDGE_KEY" in str(err.value)


def test_openai_env_defaults_are_used(fake_openai, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    settings = ApiSettings(model="fake-model")
    check_api_settings(settings, "stage_configs.cot_distillation")
    out = ApiClient(settings).chat([ask("x")])
    assert out[0]["texts"] == ["echo: x"]
    assert fake_openai.requests[0]["headers"]["authorization"] == "Bearer sk-from-env"
    assert api_identity(settings) == f"{fake_openai.base_url}|fake-model"


@pytest.mark.parametrize("kw, env, expected", [
    ({"model": None, "base_url": "http://x/v1"}, {}, "j.model: the model name"),
    ({"model": "m"}, {}, "j.base_url: no endpoint"),
    ({"model": "m", "base_url": "localhost:8000"}, {}, "j.base_url: 'localhost:8000' is not an http(s) URL"),
    ({"model": "m", "api_key_env": "NOPE_KEY"}, {"OPENAI_BASE_URL": "http://x/v1"},
     "j.api_key_env: environment variable NOPE_KEY is not set"),
    ({"model": "m", "base_url": "http://x/v1", "max_concurrency": 0}, {}, "j.max_concurrency: 0 must be positive"),
    ({"model": "m", "base_url": "http://x/v1", "timeout_s": -1.0}, {}, "j.timeout_s: -1.0 must be positive"),
    ({"model": "m", "base_url": "http://x/v1", "requests_per_minute": 0}, {}, "j.requests_per_minute: 0 must be positive"),
    ({"model": "m", "base_url": "http://x/v1", "max_calls": 0}, {}, "j.max_calls: 0 must be positive"),
    ({"model": "m", "base_url": "http://x/v1", "max_retries": -1}, {}, "j.max_retries: -1 must be 0 or more"),
])
def test_check_api_settings_one_line_naming_the_key(kw, env, expected):
    with pytest.raises(ConfigError) as err:
        check_api_settings(ApiSettings(**kw), "j", environ=env)
    assert str(err.value).startswith(expected) and "\n" not in str(err.value)


def test_check_api_settings_uses_the_stage_spelling_of_keys():
    with pytest.raises(ConfigError, match=r"^stage_configs\.cot\.teacher_base_url: no endpoint"):
        check_api_settings(ApiSettings(model="gpt-4"), "stage_configs.cot", environ={},
                           names={"base_url": "teacher_base_url"})
    check_api_settings(ApiSettings(model="gpt-4"), "x", environ={"OPENAI_BASE_URL": "https://h/v1"})


def test_cache_key_is_canonical():
    assert cache_key({"a": 1, "b": [1, 2]}, "t") == cache_key({"b": [1, 2], "a": 1}, "t")
    assert cache_key("x", 1) != cache_key("x", 2) and len(cache_key("x")) == 64


@pytest.mark.slow
def test_one_named_ray_actor_shares_budget_and_cache_across_workers(fake_openai, tmp_path, ray_session):
    ray = ray_session
    settings = ApiSettings(model="fake-model", base_url=fake_openai.base_url, max_calls=5, max_concurrency=2)
    name = f"api-test-{os.getpid()}"
    a = make_api_actor(settings, str(tmp_path / "calls.jsonl"), name=name, budget_key="max_judge_calls")
    b = make_api_actor(settings, str(tmp_path / "calls.jsonl"), name=name)
    assert a._actor_id == b._actor_id

    @ray.remote(num_cpus=0)
    def worker(actor, k):
        from fnsft.actors.api_client import chat_through
        from fnsft.errors import BudgetExhausted

        try:
            return chat_through(actor, [{"messages": [{"role": "user", "content": f"w{k}-{i}"}]}
                                        for i in range(3)])
        except BudgetExhausted as e:  # unwrapped from Ray's RayTaskError: the one-line message
            return str(e)

    outs = ray.get([worker.remote(a, 0), worker.remote(b, 1)])
    assert fake_openai.count == 5  # one budget for both workers
    stopped = [o for o in outs if isinstance(o, str)]
    assert len(stopped) == 1 and stopped[0].startswith("max_judge_calls:") and "\n" not in stopped[0]
    answered = [o for o in outs if not isinstance(o, str)][0]
    assert all(r["error"] is None and r["texts"][0].startswith("echo: w") for r in answered)
    stats = ray.get(a.stats.remote())
    assert stats["calls"] == 5 and stats["budget_left"] == 0
    ray.kill(a)
    assert len(CallCache(str(tmp_path / "calls.jsonl"))) == 5


def test_a_huge_retry_after_is_capped_and_counted(fake_openai):
    """A server asking to wait an hour is retried after max_retry_after_s, not slept on for an hour
    (nor given up on at once, as the openai client does past 2 minutes)."""
    fake_openai.retry_after = "3600"
    fake_openai.push("429", "429")
    c = client(fake_openai, max_retries=3, max_retry_after_s=0.5)
    t0 = time.monotonic()
    out = c.chat([ask("x")])
    assert time.monotonic() - t0 < 5.0
    assert out[0]["error"] is None and fake_openai.count == 3
    s = c.stats()
    assert s["retries"] == 2 and s["retry_after_capped"] == 2


def test_retries_stop_when_the_retry_budget_is_spent(fake_openai):
    """Many retries of a failing endpoint end within retry_budget_s, waits and attempts included."""
    fake_openai.fault_for = lambda body: "500"
    c = client(fake_openai, max_retries=50, retry_budget_s=2.0)
    t0 = time.monotonic()
    out = c.chat([ask("x")])
    assert time.monotonic() - t0 < 4.0
    assert "HTTP 500" in out[0]["error"] and "retry_budget_s=2" in out[0]["error"]
    assert 2 <= fake_openai.count < 51


def test_a_slow_answer_gets_no_more_than_the_retry_budget(fake_openai):
    fake_openai.slow_s = 5.0
    fake_openai.fault_for = lambda body: "slow"
    c = client(fake_openai, timeout_s=60.0, max_retries=3, retry_budget_s=1.0)
    t0 = time.monotonic()
    out = c.chat([ask("x")])
    assert time.monotonic() - t0 < 3.0 and out[0]["error"].startswith("timeout")


@pytest.mark.parametrize("field,value", [("retry_budget_s", 0), ("max_retry_after_s", -1.0)])
def test_retry_bounds_must_be_positive(field, value):
    s = ApiSettings(model="m", base_url="http://127.0.0.1:1/v1", **{field: value})
    with pytest.raises(ConfigError, match=rf"judge.{field}: .* must be positive"):
        check_api_settings(s, "judge")
