"""The local judge: a pool of Ray actors reading next-token probabilities of the tiny model."""

import pytest

from fnsft.judges import JudgeSettings, build_judge


@pytest.mark.slow
def test_local_judge_pool_gives_probabilities(ray_session, tiny_model_dir, tmp_path):
    s = JudgeSettings(type="local", kind="pairwise", position_debias="none", num_replicas=2, num_cpus=0.5,
                      model_name_or_path=tiny_model_dir)
    judge = build_judge(s, cache_path=str(tmp_path / "c.jsonl"))
    try:
        prompts = [f"What is {i} + {i}?" for i in range(6)]
        a = [str(2 * i) for i in range(6)]
        b = ["no idea"] * 6
        prefs = judge.pairwise(prompts, a, b)
        assert all(p is not None and 0.0 < p < 1.0 for p in prefs)  # probabilities, not hard letters
        # straight from the actors: P(A) + P(B) after normalising is 1
        raw = judge.backend.judge([{"text": "Which is better? A or B"}], "pairwise")
        assert 0 < raw[0].value < 1
        probs = judge.backend.pool.actors[0].option_probs.remote(["Which? A or B"], ["A", "B"])
        import ray

        p = ray.get(probs)[0]["probs"]
        assert p["A"] / (p["A"] + p["B"]) + p["B"] / (p["A"] + p["B"]) == pytest.approx(1.0)
        # pointwise: an expected score inside the range; binary: P(yes)
        judge.settings.kind = "pointwise"
        scores = judge.pointwise(prompts[:2], a[:2], normalise=False)
        assert all(1.0 <= v <= 10.0 for v in scores)
        st = judge.stats()
        assert st["judge/calls"] == 8 and st["judge/masked_share"] == 0.0 and st["judge/tokens"] > 0
        # identical judgements again: the cache answers
        judge.settings.kind = "pairwise"
        assert judge.pairwise(prompts, a, b) == prefs
        assert judge.stats()["judge/cache_hits"] == 6
    finally:
        judge.backend.pool.kill()
