"""``rl.reward.num_replicas > 1``: every reward replica scores a share of each batch."""

from __future__ import annotations

import pytest

from fnsft.testing import TINY


@pytest.mark.slow
def test_every_reward_replica_scores(ray_session):
    import ray

    from fnsft.actors.group import RoleResources
    from fnsft.actors.roles import launch_roles
    from fnsft.actors.rollout import collect_rollout
    from fnsft.models.builtin import materialize_builtin
    from fnsft.models.handle import ModelHandle
    from fnsft.rl.rewards import RewardSpec

    handle = ModelHandle(source=materialize_builtin(TINY))
    specs = [RewardSpec(type="target_chars", chars="ab"), RewardSpec(type="length_penalty", target_length=4, unit="chars", weight=0.5)]
    roles = launch_roles(handle, name="prec-reward", generation=RoleResources(num_cpus=0.1),
                         generation_kwargs={"engine": "hf"}, reward=RoleResources(num_replicas=2, num_cpus=0.1),
                         reward_specs=specs)
    try:
        rows = [{"prompt": p} for p in ("hello", "a b", "what is it", "tell me", "ok")]
        ro = collect_rollout(roles, rows, num_generations=2, sampling={"max_new_tokens": 6, "temperature": 1.0},
                             pad_id=0, seed=3)
        counts = ray.get([a.num_scored.remote() for a in roles.reward.actors])
        assert counts == [5, 5], counts  # both replicas scored half of the 10 completions
        # Joined in order: the same scores one actor gives the whole batch.
        whole = ray.get(roles.reward.actors[0].score.remote(ro.prompts, ro.completions))
        assert list(ro.arrays["scores"]) == pytest.approx(whole["rewards"])
        assert ro.components["target_chars"] == pytest.approx(whole["components"]["target_chars"])
    finally:
        roles.shutdown()
