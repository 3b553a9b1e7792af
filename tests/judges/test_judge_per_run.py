"""Runs sharing a cluster: each run's judge has its own API actor (its key, read where the run
started it) and one budget across every replica of the run (reward actors get pickled copies)."""

import os

import pytest

from fnsft.judges import JudgeSettings, build_judge

FNS = os.path.join(os.path.dirname(__file__), "judge_fns.py")


@pytest.mark.slow
def test_two_runs_on_one_endpoint_each_send_their_own_key(fake_openai, ray_session, monkeypatch):
    ray = ray_session
    fake_openai.answer = lambda body: "7"
    s = JudgeSettings(type="api", score_range=[1, 9], top_logprobs=0,
                      api={"model": "judge-model", "base_url": fake_openai.base_url, "api_key_env": "JUDGE_KEY",
                           "max_retries": 0, "timeout_s": 10})
    monkeypatch.setenv("JUDGE_KEY", "key-of-run-a")
    run_a = build_judge(s, run_id="run-a")
    monkeypatch.setenv("JUDGE_KEY", "key-of-run-b")
    run_b = build_judge(s, run_id="run-b")
    monkeypatch.setenv("JUDGE_KEY", "key-of-no-run")  # a process that did not start the run: never read

    @ray.remote(num_cpus=0)
    def replica(judge, text):  # a reward actor's copy of the run's judge
        return judge.pointwise(["q"], [text])

    assert ray.get([replica.remote(run_a, "from a"), replica.remote(run_b, "from b")]) == [[0.75], [0.75]]
    assert run_a.pointwise(["q"], ["again a"]) == [0.75]
    keys = {r["body"]["messages"][-1]["content"].split("[Answer]")[-1].strip().split("\n")[0]:
            r["headers"]["authorization"] for r in fake_openai.requests}
    assert keys == {"from a": "Bearer key-of-run-a", "again a": "Bearer key-of-run-a",
                    "from b": "Bearer key-of-run-b"}, keys


@pytest.mark.slow
def test_max_judge_calls_is_one_budget_across_replicas(ray_session):
    ray = ray_session
    from fnsft.judges.base import JudgeBudgetExhausted

    judge = build_judge(JudgeSettings(type="function", function=f"{FNS}:letter_share", score_range=[0, 1],
                                      max_judge_calls=5), run_id="run-budget")

    @ray.remote(num_cpus=0)
    def replica(judge, k):
        try:
            judge.pointwise(["q"] * 3, [f"a{k}{i}" for i in range(3)])
            return judge.counters()["calls"]
        except JudgeBudgetExhausted as e:
            return str(e)

    outs = ray.get([replica.remote(judge, k) for k in range(2)])
    assert sorted(map(str, outs))[0] == "3" and "max_judge_calls: the budget of 5" in sorted(map(str, outs))[1]
    with pytest.raises(JudgeBudgetExhausted):
        judge.pointwise(["q"], ["one more"])  # the driver's copy shares the spent budget
