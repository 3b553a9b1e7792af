"""Ray Train V2's report logging inside a worker, checked against ``ray>=2.60,<2.61``.

Ray Train V2 logs every ``ray.train.report`` at INFO from its private
``ray.train.v2._internal.execution.context`` module, under a logger named by that module's file
path (``logging.getLogger(__file__)``), so no public logger name reaches it. The RL loop reports
every iteration and prints its own line: :func:`quiet_train_report_logs` raises that logger to
WARNING. Public path (another Ray): the lines stay.
"""

from __future__ import annotations

import logging

from fnsft.compat import in_range

CHECKED = ((2, 60), (2, 61))  # ray>=2.60,<2.61
HOOK = ("ray.train.v2._internal.execution.context", "logger")  # (module, the name it logs reports with)


def checked() -> bool:
    return in_range("ray", *CHECKED)


def quiet_train_report_logs() -> bool:
    """Keep Ray Train's one-INFO-line-per-report out of this worker's output; returns whether it
    did (False outside :data:`CHECKED` or when the module moved)."""
    if not checked():
        return False
    try:
        from ray.train.v2._internal.execution import context
    except ImportError:
        return False
    logger = getattr(context, "logger", None)
    if not isinstance(logger, logging.Logger):
        return False
    logger.setLevel(logging.WARNING)
    return True
