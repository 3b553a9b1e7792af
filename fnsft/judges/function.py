"""``judge.type: function`` — a Python callable is the judge (rule judges, tests, custom scorers).

The callable gets keyword arguments it names among ``prompt``, ``response`` (pointwise/binary),
``response_a``, ``response_b`` (pairwise) and ``principles``; it returns a number (a score on
``score_range``; a probability that A is better; P(yes)), a reply text parsed like a model's
(``"A"``, ``"7"``, ``"yes"``), or ``None`` (masked). An exception is a failed call (masked,
counted, not cached).
"""

from __future__ import annotations

import hashlib
import inspect
import time

from fnsft.judges.base import Outcome
from fnsft.judges.parsing import from_function_value


class FunctionBackend:
    def __init__(self, ref: str, score_range):
        from fnsft.rl.rewards import load_function

        self.ref = ref
        self.fn = load_function(ref, "judge.function")
        self.score_range = list(score_range)
        self.identity = f"function:{ref}:{self._source_hash()}"
        try:
            params = inspect.signature(self.fn).parameters.values()
            self._var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
            self._names = {p.name for p in params}
        except (TypeError, ValueError):
            self._var_kw, self._names = True, set()

    def __getstate__(self):  # the function is re-imported where the judge runs
        return {"ref": self.ref, "score_range": self.score_range}

    def __setstate__(self, state):
        self.__init__(state["ref"], state["score_range"])

    def _source_hash(self) -> str:
        """Editing the judge's source changes its identity, so stale cached verdicts are not reused."""
        try:
            src = inspect.getsource(self.fn)
        except (OSError, TypeError):
            src = getattr(self.fn, "__qualname__", repr(self.fn))
        return hashlib.sha256(src.encode()).hexdigest()[:12]

    def judge(self, items: list[dict], kind: str) -> list[Outcome]:
        out = []
        for it in items:
            kwargs = {"prompt": it["prompt"], "principles": it["principles"]}
            if it["second"] is None:
                kwargs["response"] = it["first"]
            else:
                kwargs.update(response_a=it["first"], response_b=it["second"])
            if not self._var_kw:
                kwargs = {k: v for k, v in kwargs.items() if k in self._names}
            t0 = time.perf_counter()
            try:
                raw = self.fn(**kwargs)
            except Exception as e:  # the user's judge failed on this item: masked, retried on a rerun
                out.append(Outcome(None, error=f"{type(e).__name__}: {e}", latency_s=time.perf_counter() - t0))
                continue
            out.append(Outcome(from_function_value(kind, raw, self.score_range), latency_s=time.perf_counter() - t0,
                               reply=raw if isinstance(raw, str) else ""))
        return out

    def close(self) -> None:
        """Nothing to stop: the function runs in the caller's process."""


__all__ = ["FunctionBackend"]
