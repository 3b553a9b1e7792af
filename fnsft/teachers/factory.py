"""Build the teacher a stage config asks for (``teacher_model_type``), and check it without Ray."""

from __future__ import annotations

from typing import Any

from fnsft.errors import ConfigError
from fnsft.teachers.base import check_template

TEACHER_TYPES = ("local", "api", "function")


def check_teacher(c: Any, key: str) -> None:
    """One-line errors for the teacher keys of ``stage_configs.cot_distillation`` (no Ray, no torch)."""
    if c.teacher_model_type not in TEACHER_TYPES:
        raise ConfigError(f"{key}.teacher_model_type: unknown type '{c.teacher_model_type}' "
                          f"(accepted: {', '.join(TEACHER_TYPES)})")
    check_template(c.teacher_prompt_template, f"{key}.teacher_prompt_template")
    for i, shot in enumerate(c.teacher_few_shot):
        if not isinstance(shot, dict) or not {"question", "rationale"} <= set(shot):
            raise ConfigError(f"{key}.teacher_few_shot[{i}]: each example needs 'question' and 'rationale'")
    if not c.teacher_model_path:
        what = {"api": "the model name at the endpoint (e.g. gpt-4)", "function": "'module:fn' or 'file.py:fn'",
                "local": "a model folder, hub id or builtin: model"}[c.teacher_model_type]
        raise ConfigError(f"{key}.teacher_model_path: missing; give {what}")
    if c.teacher_model_type == "function":
        from fnsft.teachers.function import load_callable

        load_callable(c.teacher_model_path, f"{key}.teacher_model_path")
    elif c.teacher_model_type == "local":
        from fnsft.models.spec import check_model_spec

        check_model_spec(c.teacher_model_path, f"{key}.teacher_model_path")
        if c.teacher_resources.num_replicas < 1:
            raise ConfigError(f"{key}.teacher_resources.num_replicas: must be >= 1")
    else:
        from fnsft.actors.api_settings import check_api_settings
        from fnsft.teachers.api import teacher_api_settings

        s = teacher_api_settings(c.teacher_model_path, c.teacher_base_url, c.api_key_env, c.teacher_api,
                                 f"{key}.teacher_api")
        check_api_settings(s, key, names={"model": "teacher_model_path", "base_url": "teacher_base_url",
                                          "max_concurrency": "teacher_api.max_concurrency",
                                          "requests_per_minute": "teacher_api.requests_per_minute",
                                          "max_retries": "teacher_api.max_retries",
                                          "timeout_s": "teacher_api.timeout_s", "max_calls": "teacher_api.max_calls",
                                          "max_total_tokens": "teacher_api.max_total_tokens",
                                          "extra_body": "teacher_api.extra_body"})


def make_teacher(c: Any, dtype: str = "auto"):
    """The :class:`~fnsft.teachers.base.Teacher` for a stage config (Ray must be up for ``local``)."""
    common = {"template": c.teacher_prompt_template, "few_shot": c.teacher_few_shot}
    if c.teacher_model_type == "function":
        from fnsft.teachers.function import FunctionTeacher

        return FunctionTeacher(c.teacher_model_path, **common)
    if c.teacher_model_type == "local":
        from fnsft.teachers.local import LocalTeacher

        return LocalTeacher(c.teacher_model_path, resources=c.teacher_resources, dtype=dtype,
                            apply_chat_template=c.teacher_apply_chat_template, batch_size=c.teacher_batch_size,
                            seed=c.seed, **common)
    from fnsft.teachers.api import ApiTeacher

    return ApiTeacher(c.teacher_model_path, base_url=c.teacher_base_url, api_key_env=c.api_key_env,
                      settings=c.teacher_api, batch_size=c.teacher_batch_size, cache_dir=c.output_dir, **common)
