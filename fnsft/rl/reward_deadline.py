"""A reward function run with a time limit per batch, in a process of its own.

A rule or user reward can hang a stage: a regex with catastrophic backtracking (``(a+)+$`` on a
long run of ``a``'s), a user function stuck on the network. Python's ``re`` cannot be stopped
inside its thread, and it holds the GIL while it matches, so a thread with a deadline does not
even let its caller wake up on time. The function therefore runs in a child process (forked: it
already holds the function, no pickling of user code), kept for the next batches; one that runs
past the deadline is killed and a fresh one forked at the next call.

Rows come back as they are scored when the function works row by row (the built-in rules), so
a batch that times out keeps the rows scored before the deadline; a batch function (a user's)
scores all rows or none.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from typing import Any, Callable, Optional


def _serve(conn, parent_end, parent_pid: int, fn: Callable, fixed: dict, label: str, row_wise: bool) -> None:
    """The child: score each batch it receives; rows one by one with ``row_wise``. It ends when
    the pipe closes or its parent is gone (a reward actor killed with ``ray.kill`` closes nothing)."""
    from fnsft.rl.rewards import call_reward

    parent_end.close()  # forked with both ends: keep only ours, so the parent's exit closes the pipe
    while True:
        try:
            while not conn.poll(1.0):
                if os.getppid() != parent_pid:
                    return
            prompts, completions, columns = conn.recv()
        except (EOFError, OSError):  # the parent is gone or closed the pipe
            return
        try:
            if row_wise:
                for j in range(len(completions)):
                    conn.send(("row", call_reward(fn, prompts[j:j + 1], completions[j:j + 1],
                                                  {k: v[j:j + 1] for k, v in columns.items()}, fixed, label)[0]))
                conn.send(("done", None))
            else:
                conn.send(("all", call_reward(fn, prompts, completions, columns, fixed, label)))
        except Exception as e:  # the caller raises it, as an in-process call would
            try:
                conn.send(("error", e))
            except Exception:  # an exception that does not pickle
                conn.send(("error", RuntimeError(f"reward {label}: {type(e).__name__}: {e}")))


class DeadlineScorer:
    """``fn`` (TRL's reward signature) called in a child process, at most ``timeout_s`` per batch.

    :meth:`score` returns the scores of the rows scored in time (``None`` for the others) and
    whether the deadline passed. Errors raised by ``fn`` are raised here.
    """

    def __init__(self, fn: Callable, fixed: dict, label: str, row_wise: bool, timeout_s: float):
        self.fn, self.fixed, self.label, self.row_wise, self.timeout_s = fn, fixed, label, row_wise, timeout_s
        self._proc: Any = None
        self._conn: Any = None

    def _start(self) -> None:
        ctx = multiprocessing.get_context("fork")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, parent, os.getpid(), self.fn, self.fixed, self.label,
                                                      self.row_wise),
                                 daemon=True, name=f"fnsft-reward-{self.label}")
        self._proc.start()
        child.close()
        self._conn = parent

    def score(self, prompts: list, completions: list[str], columns: dict[str, list]) -> tuple[list, bool]:
        """``(scores, timed_out)``: one entry per row, ``None`` where the row was not scored in time."""
        if self._proc is None or not self._proc.is_alive():
            self._start()
        deadline = time.monotonic() + self.timeout_s
        self._conn.send((prompts, completions, columns))
        scores: list[Optional[float]] = []
        while True:
            if not self._conn.poll(max(0.0, deadline - time.monotonic())):
                self.close()  # still running: kill it, the next batch gets a fresh process
                return scores + [None] * (len(completions) - len(scores)), True
            kind, value = self._conn.recv()
            if kind == "row":
                scores.append(value)
            elif kind == "done":
                return scores, False
            elif kind == "all":
                return list(value), False
            else:
                raise value

    def close(self) -> None:
        """Stop the child process (a later :meth:`score` starts a new one)."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.join(5)
            self._conn.close()
        self._proc = self._conn = None

    def __getstate__(self):  # a term travels to its Ray actor before it ever scores
        return {**self.__dict__, "_proc": None, "_conn": None}
