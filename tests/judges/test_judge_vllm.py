"""The API judge against a real OpenAI-compatible server: vLLM serving SmolLM2 on 127.0.0.1
(the ``vllm_server`` fixture of tests/conftest.py; skipped where vLLM's venv is absent)."""

import pytest

from fnsft.judges import JudgeSettings, build_judge

pytestmark = pytest.mark.slow


def test_api_judge_against_vllm(request, tmp_path):
    try:
        server = request.getfixturevalue("vllm_server")
    except pytest.FixtureLookupError:
        pytest.skip("no vllm_server fixture in this checkout")
    api = {"model": server.model, "base_url": server.base_url, "timeout_s": 300.0, "max_retries": 1}
    s = JudgeSettings(type="api", kind="pairwise", api=api, top_logprobs=5)
    judge = build_judge(s, cache_path=str(tmp_path / "judge_cache.jsonl"))
    prompts = ["What is the capital of France?", "What is 2 + 2?"]
    good, bad = ["The capital of France is Paris.", "2 + 2 = 4."], ["I like turtles.", "2 + 2 = 5."]
    prefs = judge.pairwise(prompts, good, bad)
    st = judge.stats()
    assert st["judge/calls"] == 4 and st["judge/errors"] == 0  # both orders asked
    assert st["judge/masked_share"] < 1.0 and any(p is not None and 0.0 <= p <= 1.0 for p in prefs)
    assert "judge/position_consistency" in st or st["judge/masked_share"] > 0
    # pointwise scores from the server's top log-probs: an expected value inside the range
    point = build_judge(JudgeSettings(type="api", kind="pointwise", score_range=[1, 9], api=api, top_logprobs=5),
                        cache_path=str(tmp_path / "judge_cache.jsonl"))
    scores = point.pointwise(prompts, good, normalise=False)
    assert any(v is not None and 1.0 <= v <= 9.0 for v in scores)
    # the rerun asks nothing
    again = build_judge(s, cache_path=str(tmp_path / "judge_cache.jsonl"))
    assert again.pairwise(prompts, good, bad) == prefs and again.stats()["judge/calls"] == 0
