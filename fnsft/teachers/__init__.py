"""Teachers for chain-of-thought distillation (YAML ``teacher_model_type``).

One interface, :class:`~fnsft.teachers.base.Teacher` (``generate(questions, n, temperature,
max_new_tokens) -> [[{"text", "finish_reason"}, ...], ...]``), three backends:

- ``function`` — :class:`~fnsft.teachers.function.FunctionTeacher`: a Python callable;
- ``local`` — :class:`~fnsft.teachers.local.LocalTeacher`: a HF model in a pool of Ray actors;
- ``api`` — :class:`~fnsft.teachers.api.ApiTeacher`: an OpenAI-compatible endpoint.

:mod:`fnsft.teachers.distill_data` asks a teacher for rationales, verifies and filters them.
"""
