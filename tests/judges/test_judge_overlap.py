"""The judge scores finished chunks of a rollout while the policy still generates the rest.

Recorded, not timed: every generation and scoring call returns its wall-clock span as the actor
saw it; with ``score_chunks`` > 1 some judge call must start before the last generation call
ends, and with ``score_chunks: 1`` (generate all, then score) none may — so the test can fail.
"""

import os

import pytest

from fnsft.testing import TINY

FNS = os.path.join(os.path.dirname(__file__), "judge_fns.py")


@pytest.mark.slow
def test_judging_overlaps_generation(ray_session):
    from fnsft.actors.group import RoleResources
    from fnsft.actors.roles import launch_roles
    from fnsft.actors.rollout import collect_rollout
    from fnsft.judges import JudgeSettings, build_judge
    from fnsft.judges.reward_term import JudgeTerm
    from fnsft.models.builtin import materialize_builtin
    from fnsft.models.handle import ModelHandle

    judge = build_judge(JudgeSettings(type="function", function=f"{FNS}:the_share", score_range=[0, 1]))
    roles = launch_roles(ModelHandle(source=materialize_builtin(TINY)), name="overlap",
                         generation=RoleResources(num_cpus=0.5), generation_kwargs={"engine": "hf"},
                         reward=RoleResources(num_cpus=0.25), reward_specs=[], reward_terms=[JudgeTerm(judge)])
    rows = [{"prompt": f"question {i}: what is {i} + {i}?"} for i in range(16)]
    sampling = {"max_new_tokens": 24, "temperature": 1.0}
    try:
        seen = {}
        for chunks in (4, 1):
            r = collect_rollout(roles, rows, num_generations=2, sampling=sampling, pad_id=0, seed=1,
                                score_chunks=chunks)
            gen = sorted(s[1:] for s in r.spans if s[0] == "generation")
            judged = sorted(s[1:] for s in r.spans if s[0] == "reward")
            assert len(gen) == len(judged) == chunks
            # each chunk is judged after it was generated, and every completion was judged once
            assert all(j[0] >= g[1] for g, j in zip(gen, judged))
            assert r.metrics["judge/judgements"] == 32 and len(r.arrays["scores"]) == 32
            seen[chunks] = sum(j[0] < gen[-1][1] for j in judged)  # judge calls begun while generating
            print(f"score_chunks {chunks}: {seen[chunks]} of {chunks} judge calls started before generation "
                  f"ended; overlap {r.timings['score_overlap_s']:.3f}s")
        assert seen[4] >= 1 and seen[1] == 0, seen
    finally:
        roles.shutdown()
