"""How long to wait before retrying an API request, and whether there is time left to.

The openai client's own retries honour a server's ``Retry-After`` of up to two minutes per retry
(and give up at once on a longer one), with its own timeout per attempt: five retries of a
60-second timeout behind 2-minute waits keep one request busy for 15 minutes. :class:`ApiClient`
retries itself instead, with these bounds (YAML, a judge's or teacher's ``type: api`` block):

- ``max_retries`` retries at most, with exponential backoff (0.5 s doubling to 8 s, jitter);
- a server's ``Retry-After``/``retry-after-ms`` is honoured up to ``max_retry_after_s`` and
  capped beyond (counted as ``retry_after_capped``);
- every attempt and wait of one request fits in ``retry_budget_s``: no retry starts whose wait
  would end past it, and an attempt's timeout is cut to the time left.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from dataclasses import dataclass
from typing import Any, Optional

INITIAL_BACKOFF_S = 0.5
MAX_BACKOFF_S = 8.0


def retry_after_s(headers: Any) -> Optional[float]:
    """The wait a server asked for (``retry-after-ms``, or ``Retry-After`` in seconds or as an
    HTTP date), or None when it named none (or nonsense)."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            value = float(ms) / 1000.0
        else:
            raw = headers.get("retry-after")
            if raw is None:
                return None
            try:
                value = float(raw)
            except ValueError:
                when = email.utils.parsedate_to_datetime(raw)
                value = when.timestamp() - time.time()
    except (TypeError, ValueError, OverflowError):
        return None
    return value if math.isfinite(value) and value >= 0 else None


@dataclass
class RetryClock:
    """The retry bounds of one request: attempts, the Retry-After cap and the total budget."""

    max_retries: int
    max_retry_after_s: float
    budget_s: float
    started: float = 0.0
    retries: int = 0
    capped: int = 0  # Retry-After values cut to max_retry_after_s
    waited_s: float = 0.0

    def __post_init__(self):
        self.started = self.started or time.monotonic()

    def left_s(self) -> float:
        return self.budget_s - (time.monotonic() - self.started)

    def next_wait(self, headers: Any = None) -> Optional[float]:
        """Seconds to wait before the next attempt, or None when no retry is left: ``max_retries``
        used, or the wait would end past the budget."""
        if self.retries >= self.max_retries:
            return None
        asked = retry_after_s(headers)
        if asked is not None and asked > 0:
            wait = min(asked, self.max_retry_after_s)
            self.capped += asked > self.max_retry_after_s
        else:
            wait = min(INITIAL_BACKOFF_S * 2.0 ** self.retries, MAX_BACKOFF_S) * (1 - 0.25 * random.random())
        if wait >= self.left_s():
            return None
        return wait

    def wait(self, seconds: float) -> None:
        self.retries += 1
        self.waited_s += seconds
        time.sleep(seconds)
