"""The shared API client against a real OpenAI-compatible server: vLLM serving SmolLM2 on 127.0.0.1."""

from __future__ import annotations

import math

import pytest

from fnsft.actors.api_client import ApiClient
from fnsft.actors.api_settings import ApiSettings, check_api_settings

pytestmark = pytest.mark.slow


def question(text: str, **kw) -> dict:
    return {"messages": [{"role": "user", "content": text}], "max_tokens": 12, "temperature": 0.0, **kw}


def test_chat_logprobs_and_cache_against_vllm(vllm_server, tmp_path):
    settings = ApiSettings(model=vllm_server.model, base_url=vllm_server.base_url, max_concurrency=4,
                           timeout_s=300.0, max_retries=1)
    check_api_settings(settings, "judge", environ={})
    cache = str(tmp_path / "calls.jsonl")
    client = ApiClient(settings, cache)
    batch = [question("Count from 1 to 10, separated by commas.", logprobs=True, top_logprobs=5),
             question("Answer with one letter, A or B: which is a vowel? A) a B) b", max_tokens=1,
                      logprobs=True, top_logprobs=5),
             question("Write a word that rhymes with cat.", temperature=1.0, n=2, seed=3)]
    out = client.chat(batch)

    assert [r["error"] for r in out] == [None] * 3
    text = out[0]["texts"][0]
    assert isinstance(text, str) and text.strip()
    assert out[0]["finish_reasons"][0] in ("stop", "length")
    assert out[0]["usage"]["prompt_tokens"] > 5 and out[0]["usage"]["completion_tokens"] > 0
    # Per generated token, 5 alternatives with log-probs, most likely first.
    lp = out[0]["top_logprobs"]
    assert len(lp) == out[0]["usage"]["completion_tokens"]
    assert all(len(alts) == 5 for alts in lp)
    assert all(a["logprob"] <= 0 for alts in lp for a in alts)
    assert all(alts[0]["logprob"] >= alts[-1]["logprob"] for alts in lp)
    if text.isascii():  # greedy: the text is the most likely token at every step
        assert "".join(alts[0]["token"] for alts in lp) == text
    # One answer token: its alternatives form (part of) a probability distribution.
    assert len(out[1]["top_logprobs"]) == 1
    assert 0 < sum(math.exp(a["logprob"]) for a in out[1]["top_logprobs"][0]) <= 1.0001
    assert len(out[2]["texts"]) == 2 and out[2]["top_logprobs"] is None
    stats = client.stats()
    # Three requests, the last asking for n=2 choices: 4 paid calls (budgets count choices).
    assert stats["calls"] == 4 and stats["errors"] == 0 and stats["completion_tokens"] > 0

    # A rerun (a new client on the same cache, as a resumed stage) makes zero calls.
    again = ApiClient(settings, cache)
    rerun = again.chat(batch)
    assert again.stats()["calls"] == 0 and again.stats()["cache_hits"] == 3
    assert [r["texts"] for r in rerun] == [r["texts"] for r in out]
    assert all(r["cached"] for r in rerun)
