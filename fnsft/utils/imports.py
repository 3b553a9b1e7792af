"""Keep a worker process from importing optional integrations its job does not use.

Installed integrations are imported by the libraries whether a run uses them or not: TRL's
trainer imports ``wandb`` (its availability check imports it), DeepSpeed's autotuner imports
``mlflow``, PEFT imports ``bitsandbytes`` (whose kernels pull in ``torch._inductor``). In a
fresh Train worker or role actor these cost ≈3.5 s of CPU of ≈12 s of imports (measured here:
user CPU 11.6 → 8.0 s for torch + transformers + TRL + PEFT + DeepSpeed), paid by every worker
of every stage. :func:`skip_unused_integrations` marks the unused ones as not installed for
this process only (``sys.modules[name] = None``: ``importlib.util.find_spec`` then answers
``None``, so every library's "is X available" check says no and skips it).

It only acts in a process that has not imported transformers, PEFT, TRL or DeepSpeed yet (they
cache some of these checks), i.e. at the very start of a worker; anywhere else it does nothing.
"""

from __future__ import annotations

import sys
from typing import Any, Iterable

# Integration -> when a job needs it.
OPTIONAL = {
    "wandb": "report_to: [wandb] (or all)",
    "mlflow": "report_to: [mlflow] (or all)",
    "bitsandbytes": "load_in_4bit / load_in_8bit, or an 8-bit/paged optimizer",
}
_USERS = ("transformers", "peft", "trl", "deepspeed", "accelerate")


def needed_integrations(cfg: Any) -> set[str]:
    """The optional integrations a stage config (``report_to``, ``load_in_4bit``/``8bit``,
    ``optim``) asks for; a config without these fields needs none."""
    report = getattr(cfg, "report_to", None) or []
    report = [report] if isinstance(report, str) else list(report)
    need = {r for r in report if r in OPTIONAL}
    if "all" in report:
        need |= {"wandb", "mlflow"}
    optim = str(getattr(cfg, "optim", "") or "")
    if getattr(cfg, "load_in_4bit", False) or getattr(cfg, "load_in_8bit", False) or \
            any(s in optim for s in ("bnb", "8bit", "paged")):
        need.add("bitsandbytes")
    return need


def skip_unused_integrations(keep: Iterable[str]) -> list[str]:
    """Mark every :data:`OPTIONAL` integration not in ``keep`` as not installed in this process;
    returns the ones marked (none once a library that checks them is imported)."""
    if any(name in sys.modules for name in _USERS):
        return []
    keep = set(keep)
    skipped = [name for name in OPTIONAL if name not in keep and name not in sys.modules]
    for name in skipped:
        sys.modules[name] = None  # type: ignore[assignment]
    return skipped
