"""AI judges (YAML ``judge:``): one interface — pointwise, pairwise, binary — over a local model
pool, an OpenAI-compatible API or a Python function. Used by RLAIF (reward, preference labels,
win rates), CoT distillation and the run report.

    from fnsft.judges import JudgeSettings, build_judge
    judge = build_judge(JudgeSettings(type="function", kind="pairwise", function="my.mod:prefer"),
                        cache_path="out/judge_cache.jsonl")
    prefs = judge.pairwise(prompts, answers_new, answers_old)   # P(new better), both orders
    judge.stats()   # calls, cache hits, masked share, tie share, position consistency, ...

Light at import (validation uses :mod:`fnsft.judges.settings` without torch or ray).
"""

from __future__ import annotations

from typing import Any, Optional

from fnsft.judges.settings import JudgeSettings, check_judge_settings

__all__ = ["JudgeSettings", "check_judge_settings", "build_judge", "model_identity"]


def model_identity(model: Any) -> str:
    """A string naming a model's weights (a path, hub id or a stage fingerprint)."""
    if isinstance(model, str):
        return model
    return getattr(model, "fingerprint", "") or getattr(model, "path", None) or getattr(model, "source", repr(model))


def build_judge(settings: JudgeSettings, *, model: Any = None, cache_path: Optional[str] = None,
                pool: Any = None, base_dir: str = ".", name: str = "judge", dtype: str = "auto",
                key: str = "judge", books: Any = None, run_id: Optional[str] = None):
    """A ready :class:`~fnsft.judges.base.Judge` for ``settings``.

    ``model``: the stage's input model (a ``ModelHandle``), judged with when ``type: local`` has no
    ``model_name_or_path``. ``pool``: an already started judge actor group (else one is started;
    the caller stops it with :meth:`~fnsft.judges.base.Judge.close`). ``cache_path``: the jsonl cache.
    ``books``: another judge's :class:`~fnsft.judges.base.JudgeBooks`, to share its budget and books.
    ``run_id``: the run the judge works for (the pipeline's id; default: a fresh one). With Ray up,
    what the judge needs on the cluster is started here, in the run's driver, named after the run
    and owned by it: the API actor (the key read from this process's environment) and the
    ``max_judge_calls`` counter; copies of the judge sent to reward actors use both, so a run
    spends one budget with its own key, and no other run shares or outlives them.
    """
    import uuid

    from fnsft.judges.base import Judge, JudgeBooks
    from fnsft.judges.templates import load_constitution

    run = run_id or uuid.uuid4().hex[:12]
    if books is None and settings.max_judge_calls:
        from fnsft.judges.budget import start_call_budget

        books = JudgeBooks(budget=start_call_budget(settings.max_judge_calls, f"fnsft-{run}-{name}-judge-budget"))

    principles = list(settings.principles)
    if settings.constitution_path:
        principles += load_constitution(settings.constitution_path, "judge.constitution_path", base_dir)
    if settings.type == "function":
        from fnsft.judges.function import FunctionBackend

        backend = FunctionBackend(settings.function, settings.score_range)
    elif settings.type == "local":
        from fnsft.judges.local import LocalBackend

        target = settings.model_name_or_path or model
        if target is None:
            raise ValueError("a local judge needs judge.model_name_or_path or the stage's model")
        if pool is None:
            from fnsft.actors.judge import start_judge_pool

            pool = start_judge_pool(target, settings, name=name, dtype=dtype)
        backend = LocalBackend(pool, model_identity(target), settings.score_range)
    else:
        from fnsft.judges.api import ApiBackend
        from fnsft.judges.settings import api_settings

        backend = ApiBackend(api_settings(settings), settings.score_range, settings.max_tokens,
                             settings.top_logprobs, actor_name=f"fnsft-{run}-{name}-judge-api")
    return Judge(settings, backend, cache_path=cache_path, principles=principles, key=key, books=books)
