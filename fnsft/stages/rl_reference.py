"""``rl.reference`` with another model than the policy: on-policy distillation's teacher.

:func:`validate_reference` checks the keys before Ray starts; :func:`reference_model` builds the
teacher's handle in the driver, after checking that it reads tokens as the policy does (its
log-probs score the policy's token ids). Each failure is one ConfigError line naming the key.
"""

from __future__ import annotations

from typing import Any, Optional

from fnsft.errors import ConfigError


def reference_mode(c) -> Optional[str]:
    """Where the reference log-probs of config ``c`` come from: ``actor``, ``policy`` (the LoRA
    policy without adapters), or None (no reference needed)."""
    if not c.needs_reference:
        return None
    mode = c.reference.mode
    if mode == "auto":  # another model (a teacher) cannot be the policy without its adapters
        mode = "policy" if c.use_peft and not c.reference.model_name_or_path else "actor"
    return mode


def validate_reference(c, key: str, spec) -> None:
    """``rl.reference`` against the algorithm ``spec``: on-policy distillation needs a teacher model
    in a reference actor; one ConfigError line naming the key, before Ray starts."""
    from fnsft.models.spec import check_model_spec

    r = c.reference
    if r.model_name_or_path:
        check_model_spec(r.model_name_or_path, f"{key}.reference.model_name_or_path")
        if r.mode not in ("auto", "actor"):  # else the model would be silently unused
            raise ConfigError(f"{key}.reference.mode: reference.model_name_or_path runs in a reference actor; use "
                              f"auto or actor (got {r.mode})")
    if spec.advantage != "teacher":
        return
    if not r.model_name_or_path:
        raise ConfigError(f"{key}.reference.model_name_or_path: {spec.name} needs the teacher whose log-probs score "
                          "the student's tokens (a model directory or builtin:... with the policy's tokenizer)")
    if c.kl_target:
        raise ConfigError(f"{key}.kl_target: {spec.name} has no KL penalty to adapt (the KL to the teacher is its "
                          "objective); remove kl_target")


def reference_model(path: Optional[str], tokenizer, pipeline_config: Any, key: str):
    """The :class:`~fnsft.models.handle.ModelHandle` of ``reference.model_name_or_path`` (None: the
    stage's incoming model serves), in the pipeline's dtype, ``trust_remote_code`` as the pipeline's."""
    if not path:
        return None
    from fnsft.models.handle import ModelHandle
    from fnsft.models.precision import model_hidden_size
    from fnsft.models.spec import resolve_model_path
    from fnsft.models.tokens import same_vocabulary

    source = resolve_model_path(path)
    trust = getattr(pipeline_config, "trust_remote_code", False)
    problem = same_vocabulary(tokenizer, source, trust)
    if problem:
        raise ConfigError(f"{key}.reference.model_name_or_path: the teacher's tokenizer differs from the policy's "
                          f"({problem}); its log-probs must score the same token ids, so give a model of the "
                          "same family")
    return ModelHandle(source=source, trust_remote_code=trust, torch_dtype=getattr(pipeline_config, "torch_dtype", "auto"),
                       hidden_size=model_hidden_size(source))
