"""Start and stop the role actors of an RL-style stage (generation, reward, reference).

The driver calls :func:`launch_roles` before the Train job, passes the returned
:class:`Roles` (actor groups are picklable: they hold handles) into the job's config, and
calls :meth:`Roles.shutdown` when the stage ends. Every actor restarts when its node is lost
(:data:`fnsft.actors.group.ROLE_MAX_RESTARTS`); generation actors follow the policy's pushes
and refuse to sample after a restart until the trainer re-sends its weights. RLAIF and CoT distillation reuse it with
their own reward terms / without a reference.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from fnsft.actors.group import ActorGroup, RoleResources, reserve_bundles

log = logging.getLogger("fnsft")


@dataclass
class Roles:
    generation: ActorGroup
    reward: Optional[ActorGroup] = None
    reference: Optional[ActorGroup] = None
    placement_group: Any = None
    startup_s: float = 0.0
    environment: Any = None  # fnsft.actors.environment.EnvironmentRole (rl.environment), else None

    def groups(self) -> list[tuple[str, ActorGroup]]:
        """``(role, group)`` of every role this stage started."""
        env = self.environment.group if self.environment is not None else None
        return [(role, g) for role, g in (("generation", self.generation), ("reward", self.reward),
                                          ("reference", self.reference), ("environment", env)) if g is not None]

    def wait_ready(self, timeout_s: Optional[float] = None) -> float:
        """Block until every actor is constructed; returns the seconds waited."""
        t0 = time.time()
        for _, group in self.groups():
            group.wait_ready(timeout_s)
        return time.time() - t0

    def nodes(self, timeout_s: float = 60.0) -> dict[str, list[dict]]:
        """Where each role's replicas run now: ``{"generation": [{"replica", "node_id", "ip"}], ...}``."""
        return {role: group.nodes(timeout_s) for role, group in self.groups()}

    def shutdown(self) -> None:
        import ray

        for _, group in self.groups():
            group.kill()
        if self.placement_group is not None:
            try:
                ray.util.remove_placement_group(self.placement_group)
            except Exception:  # already removed
                pass
            self.placement_group = None


def launch_roles(
    model,
    *,
    name: str,
    generation: RoleResources,
    generation_kwargs: dict,
    generation_runtime_env: Optional[dict] = None,
    reward: Optional[RoleResources] = None,
    reward_specs: Optional[list] = None,
    reward_terms: Sequence = (),
    reward_kwargs: Optional[dict] = None,
    reference: Optional[RoleResources] = None,
    reference_model=None,
    dtype: str = "auto",
    apply_chat_template: bool = True,
    wait: bool = True,
) -> Roles:
    """Reserve one placement group for all roles, start the actors, wait until they are ready.

    ``generation_kwargs`` go to :class:`~fnsft.actors.generation.GenerationActor` (``lora``,
    ``engine``, ``chat_template``, ``batch_size``...); ``generation_runtime_env`` is Ray's
    ``runtime_env`` for them (:func:`fnsft.actors.vllm_runtime.actor_runtime_env`). Every
    :class:`~fnsft.actors.reward.RewardActor` builds ``reward_specs`` into terms and sums them with
    the ready ``reward_terms`` (RLAIF's judge); ``reward_kwargs`` are its other arguments
    (``pairs_path``...). ``reward``/``reference`` ``None``: no such actor; ``reference_model``: the reference actor's model
    when it is not ``model`` (on-policy distillation's teacher). ``wait=False`` returns while the actors still load their models, so the Train
    job can start meanwhile; call :meth:`Roles.wait_ready` before the first rollout.
    """
    from fnsft.actors.generation import GenerationActor
    from fnsft.actors.reference import ReferenceActor
    from fnsft.actors.reward import RewardActor

    t0 = time.time()
    wanted = [generation] + ([reward] if reward is not None else []) + ([reference] if reference is not None else [])
    pg, offsets = reserve_bundles(wanted, f"{name}-roles")
    roles = Roles(generation=None, placement_group=pg)  # type: ignore[arg-type]
    try:
        roles.generation = ActorGroup(GenerationActor, generation, args=(model,),
                                      kwargs={"dtype": dtype, "apply_chat_template": apply_chat_template,
                                              "follows_policy": True, **generation_kwargs},
                                      pg=pg, bundle_offset=offsets[0], name=f"{name}-generation",
                                      runtime_env=generation_runtime_env)
        i = 1
        if reward is not None:
            roles.reward = ActorGroup(RewardActor, reward, args=(reward_specs,),
                                      kwargs={"apply_chat_template": apply_chat_template,
                                              "terms": list(reward_terms), **(reward_kwargs or {})},
                                      pg=pg, bundle_offset=offsets[i], name=f"{name}-reward")
            i += 1
        if reference is not None:
            roles.reference = ActorGroup(ReferenceActor, reference, args=(reference_model or model,), kwargs={"dtype": dtype},
                                         pg=pg, bundle_offset=offsets[i], name=f"{name}-reference")
        if wait:
            roles.wait_ready()
    except BaseException:
        roles.shutdown()
        raise
    roles.startup_s = time.time() - t0
    log.info("[%s] roles %s in %.1fs: generation x%d%s%s", name, "ready" if wait else "starting",
             roles.startup_s, len(roles.generation),
             f", reward x{len(roles.reward)}" if roles.reward else "",
             f", reference x{len(roles.reference)}" if roles.reference else ", reference: policy without adapters / none")
    return roles
