"""``teacher_model_type: function`` — a Python callable writes the rationales.

``teacher_model_path`` is ``package.module:fn`` or ``path/to/file.py:fn``. The function is called
once per sample with the keyword arguments it declares among ``question``, ``prompt``, ``hint``
(the gold answer during STaR rationalisation, else None), ``sample_index``, ``temperature`` and
``max_new_tokens``, and returns the rationale text, or ``{"text", "finish_reason"}``. A
programmatic solver (see ``examples/reasoning/teacher.py``) is the cheapest teacher there is.
"""

from __future__ import annotations

import importlib
import inspect
import os
from typing import Callable, Optional

from fnsft.errors import ConfigError
from fnsft.teachers.base import Teacher
from fnsft.utils.pyfile import import_file, module_name

_ARGS = ("question", "prompt", "hint", "sample_index", "temperature", "max_new_tokens")


def load_callable(spec: str, key: str) -> Callable:
    """``module:fn`` or ``file.py:fn`` -> the function (one-line ConfigError naming ``key`` otherwise)."""
    if ":" not in spec:
        raise ConfigError(f"{key}: '{spec}' is not 'module:function' or 'file.py:function'")
    where, name = spec.rsplit(":", 1)
    try:
        if where.endswith(".py"):
            path = os.path.abspath(where)
            if not os.path.isfile(path):
                raise ConfigError(f"{key}: file {where} not found")
            module = import_file(path, module_name("fnsft_teacher_", path), key, where, reuse=True)
        else:
            module = importlib.import_module(where)
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"{key}: importing {where} failed: {type(e).__name__}: {e}") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ConfigError(f"{key}: {where} has no function '{name}'")
    return fn


class FunctionTeacher(Teacher):
    kind = "function"
    batch_size = 1  # cheap calls: cache after every question, so a crash loses nothing

    def __init__(self, spec: str, key: str = "teacher_model_path", **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        self.fn = load_callable(spec, key)
        params = inspect.signature(self.fn).parameters
        takes_all = any(p.kind == p.VAR_KEYWORD for p in params.values())
        self._args = [a for a in _ARGS if takes_all or a in params]
        if not self._args:
            raise ConfigError(f"{key}: {spec} must accept at least one of {', '.join(_ARGS)}")

    @property
    def identity(self) -> str:
        return f"function:{self.spec}"

    def _complete(self, prompts, questions, hints, n, temperature, max_new_tokens):
        out = []
        for prompt, question, hint in zip(prompts, questions, hints):
            samples = []
            for i in range(n):
                values = {"question": question, "prompt": prompt, "hint": hint, "sample_index": i,
                          "temperature": temperature, "max_new_tokens": max_new_tokens}
                samples.append(_as_sample(self.fn(**{a: values[a] for a in self._args})))
            out.append(samples)
        return out


def _as_sample(value) -> dict:
    if isinstance(value, dict):
        text: Optional[str] = value.get("text")
        return {"text": text, "finish_reason": value.get("finish_reason", "stop")}
    if value is None:
        return {"text": None, "finish_reason": "error", "error": "the function returned None"}
    return {"text": str(value), "finish_reason": "stop"}
