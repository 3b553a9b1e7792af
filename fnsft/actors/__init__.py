"""Role actors for RL-style stages, one role per class (plain Python; ``ActorGroup`` makes them Ray actors).

- :class:`~fnsft.actors.serving.ModelServer` — the base of every role that serves a HF model:
  loads it from a ModelHandle, accepts weight pushes (:func:`~fnsft.actors.serving.push_policy_weights`),
  answers batched calls. Generation, reference and reward models derive from it; so do judges
  and teachers.
- :class:`~fnsft.actors.generation.GenerationActor` — samples completions; receives policy weights.
- :class:`~fnsft.actors.reward.RewardActor` — weighted sum of reward terms (rules, functions, models,
  and any ready term it is given, e.g. RLAIF's judge; one contract: :mod:`fnsft.rl.reward_terms`).
- :class:`~fnsft.actors.reference.ReferenceActor` — frozen log-probs for the KL term.
- :class:`~fnsft.actors.group.ActorGroup` — fans calls out to replicas, splits batches.
- :func:`~fnsft.actors.roles.launch_roles` / :func:`~fnsft.actors.rollout.collect_rollout` —
  start the roles for a stage; one prompts → generate → score round.
"""
