"""``rl.environment`` checked before Ray starts (:meth:`fnsft.stages.rl.RLStage.validate_config`)."""

from __future__ import annotations

from fnsft.errors import ConfigError


def check_environment(settings, key: str) -> None:
    """Everything about ``rl.environment`` that can be known before Ray: the class loads and
    constructs with ``kwargs``, every tool loads and has a schema, the numbers are in range."""
    from fnsft.envs.loading import load_environment_class
    from fnsft.envs.tools import load_tools

    if not settings.enabled:
        return
    if settings.max_turns < 1:
        raise ConfigError(f"{key}.max_turns: must be >= 1 (got {settings.max_turns})")
    if settings.num_replicas < 1:
        raise ConfigError(f"{key}.num_replicas: must be >= 1 (got {settings.num_replicas})")
    for name in ("step_timeout_s", "tool_timeout_s", "tool_memory_mb"):
        if not getattr(settings, name) > 0:
            raise ConfigError(f"{key}.{name}: must be > 0 (got {getattr(settings, name)})")
    if settings.num_cpus < 0 or settings.transcripts < 0:
        raise ConfigError(f"{key}.num_cpus/transcripts: must be >= 0")
    if settings.class_:
        cls = load_environment_class(settings.class_, f"{key}.class")
        try:
            env = cls(**settings.kwargs)
        except Exception as e:
            raise ConfigError(f"{key}.kwargs: {settings.class_}(**kwargs) failed: {type(e).__name__}: {e}") from None
        close = getattr(env, "close", None)
        if callable(close):
            close()
    load_tools(settings.tools, f"{key}.tools")
