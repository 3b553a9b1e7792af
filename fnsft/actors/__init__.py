"""Role actors for RL-style stages, one role per class (plain Python; ``ActorGroup`` makes them Ray actors).

- :class:`~fnsft.actors.generation.GenerationActor` — samples completions; receives policy weights.
- :class:`~fnsft.actors.reward.RewardActor` — weighted sum of reward terms (rules, functions, models).
- :class:`~fnsft.actors.reference.ReferenceActor` — frozen log-probs for the KL term.
- :class:`~fnsft.actors.group.ActorGroup` — fans calls out to replicas, splits batches.
- :func:`~fnsft.actors.roles.launch_roles` / :func:`~fnsft.actors.rollout.collect_rollout` —
  start the roles for a stage; one prompts → generate → score round.
"""
