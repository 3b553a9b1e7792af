"""What the API client's budgets count: every attempt (retries included) of every choice (``n``),
and the tokens the endpoint reports; empty answers are never cached as answers."""

from __future__ import annotations

import pytest

from fnsft.actors.api_client import ApiClient
from fnsft.actors.api_settings import ApiSettings, check_api_settings
from fnsft.errors import BudgetExhausted, ConfigError


def ask(text: str, **kw) -> dict:
    return {"messages": [{"role": "user", "content": text}], "max_tokens": 8, "temperature": 0.0, **kw}


def client(fake, tmp_path=None, **kw) -> ApiClient:
    kw.setdefault("max_retries", 2)
    kw.setdefault("timeout_s", 10.0)
    settings = ApiSettings(model="fake-model", base_url=fake.base_url, **kw)
    return ApiClient(settings, str(tmp_path / "calls.jsonl") if tmp_path else None, budget_key="judge.api.max_calls")


def test_a_retried_request_spends_one_call_per_attempt(fake_openai):
    c = client(fake_openai, max_calls=2)
    fake_openai.push("500")  # the first attempt fails, the retry is answered: two requests paid for
    assert c.chat([ask("q0")])[0]["error"] is None
    assert c.stats()["calls"] == 2 and c.stats()["budget_left"] == 0
    with pytest.raises(BudgetExhausted) as err:
        c.chat([ask("q1")])
    assert str(err.value).startswith("judge.api.max_calls: the budget of 2 API calls is spent")
    assert fake_openai.count == 2


def test_n_choices_spend_n_calls(fake_openai):
    c = client(fake_openai, max_calls=3)
    with pytest.raises(BudgetExhausted):
        c.chat([ask("a", n=2), ask("b", n=2)])  # 4 completions asked, 3 allowed: the second is not sent
    assert fake_openai.count == 1 and c.stats()["calls"] == 2


def test_token_budget_stops_in_one_line(fake_openai):
    fake_openai.answer = lambda body: "one two three four five six"
    c = client(fake_openai, max_total_tokens=10)
    c.chat([ask("q0 is a question")])  # 4 prompt + 6 completion tokens: the budget is spent
    assert c.stats()["total_tokens"] == 10 and c.stats()["tokens_left"] == 0
    with pytest.raises(BudgetExhausted) as err:
        c.chat([ask("q1")])
    msg = str(err.value)
    assert msg.startswith("judge.api.max_total_tokens: the budget of 10 tokens is spent") and "\n" not in msg
    assert fake_openai.count == 1


def test_token_budget_is_checked_with_the_other_settings():
    with pytest.raises(ConfigError, match=r"^judge.max_total_tokens: 0 must be positive"):
        check_api_settings(ApiSettings(model="m", base_url="http://x/v1", max_total_tokens=0), "judge")


def test_an_empty_answer_is_not_cached(fake_openai, tmp_path):
    fake_openai.answer = lambda body: ""  # an endpoint in trouble: 200 with nothing in it
    c = client(fake_openai, tmp_path)
    assert c.chat([ask("q")])[0]["texts"] == [""]
    assert len(c.cache) == 0
    fake_openai.answer = lambda body: "fine"
    assert c.chat([ask("q")])[0]["texts"] == ["fine"] and fake_openai.count == 2
