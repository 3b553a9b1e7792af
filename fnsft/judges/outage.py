"""When the judge is down, stop instead of training on nothing (YAML ``judge.max_masked_share``).

A failed or unparseable judgement is masked: the row leaves the update. If an endpoint fails
(5xx, timeouts, garbage) every row is masked and the RL loop would "complete" having learnt
nothing, and a rerun would skip the stage. :func:`check_masked_share` turns a masked share above
the threshold into one :class:`~fnsft.errors.StageError` line naming the share, the threshold and
what failed (the judge's errors counted by kind, from :func:`error_kind`).
"""

from __future__ import annotations

from fnsft.errors import StageError

# JudgeBooks field -> how the message names it; the order is the order of the message.
ERROR_FIELDS = {"errors_http_5xx": "HTTP 5xx", "errors_http_429": "HTTP 429", "errors_http_other": "other HTTP errors",
                "errors_timeout": "timeouts", "errors_connection": "connection failures",
                "errors_unreadable": "unreadable answer", "errors_other": "other failures"}


def error_kind(error: str) -> str:
    """The :class:`~fnsft.judges.base.JudgeBooks` field counting a failed call's ``error`` text
    (the API client's wording: ``HTTP 503 after...``, ``timeout: ...``, ``connection failed...``,
    ``unreadable answer: ...``; anything else, e.g. a function judge's exception: other)."""
    if error.startswith("HTTP 5"):
        return "errors_http_5xx"
    if error.startswith("HTTP 429"):
        return "errors_http_429"
    if error.startswith("HTTP "):
        return "errors_http_other"
    for prefix, name in (("timeout", "errors_timeout"), ("connection failed", "errors_connection"),
                         ("unreadable answer", "errors_unreadable")):
        if error.startswith(prefix):
            return name
    return "errors_other"


def check_masked_share(counters: dict, threshold: float, key: str, where: str) -> None:
    """Raise :class:`StageError` when ``masked / judgements`` in ``counters`` (a judge's raw
    counters, :meth:`~fnsft.judges.base.Judge.counters`, or a batch's) is above ``threshold``.

    ``key``: the judge's YAML path; ``where``: what the counters cover ("in one scoring batch").
    """
    n, masked = int(counters.get("judgements", 0)), int(counters.get("masked", 0))
    if n <= 0 or masked / n <= threshold:
        return
    kinds = [(label, int(counters.get(f, 0))) for f, label in ERROR_FIELDS.items()]
    failed = sum(k for _, k in kinds)
    kinds.append(("unparsed replies", max(0, masked - failed)))
    seen = ", ".join(f"{label}: {k}" for label, k in kinds if k)
    cause = ("the judge endpoint is failing (down, overloaded or refusing; failed calls are not cached, a "
             "rerun asks again)" if failed >= masked - failed else
             f"the judge's replies do not parse (check {key}.template, {key}.max_tokens and {key}.score_range)")
    raise StageError(f"{key}.max_masked_share: {masked} of {n} judgements masked ({masked / n:.0%} > {threshold:.0%}) "
                     f"{where}; {seen}: {cause}; raise {key}.max_masked_share (up to 1) to train on anyway")
