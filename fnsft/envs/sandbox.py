"""Run one tool call in a separate process with a time and a memory limit.

The call goes to a fresh ``python -m fnsft.envs.sandbox`` (JSON in on stdin, JSON out on
stdout): a tool that loops forever is killed at ``timeout_s``; one that allocates past
``memory_mb`` gets a ``MemoryError`` (``RLIMIT_AS``, set after the tool is imported, before it
runs); one that crashes the interpreter takes only its own process. The caller always gets text
back — the result, or ``error: ...`` — which becomes the ``tool`` turn the model reads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

MAX_RESULT_CHARS = 2000  # a tool's answer enters the transcript; keep it bounded


def run_tool(ref: str, arguments: dict, timeout_s: float, memory_mb: int) -> tuple[bool, str]:
    """``(ok, text)``: the tool's result as text, or why it failed."""
    request = json.dumps({"ref": ref, "arguments": arguments, "memory_mb": memory_mb})
    from fnsft.utils.redact import is_secret_name

    # A tool runs with model-chosen arguments and its answer lands in transcripts: no keys or tokens.
    env = {k: v for k, v in os.environ.items() if not is_secret_name(k)}
    env.update({"OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
    try:
        done = subprocess.run([sys.executable, "-m", "fnsft.envs.sandbox"], input=request, capture_output=True,
                              text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return False, f"error: the tool ran past its {timeout_s:g}s limit"
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (done.stderr or "").strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        return False, f"error: the tool's process failed ({tail[0][:200]})"
    return bool(answer["ok"]), str(answer["text"])[:MAX_RESULT_CHARS]


def _serve() -> None:
    """The child's side: load the tool, limit memory, call it, print one JSON line."""
    import resource

    from fnsft.envs.loading import load_object

    request = json.loads(sys.stdin.read())
    try:
        fn = load_object(request["ref"], "tool")
        limit = int(request["memory_mb"]) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        result = fn(**request["arguments"])
        answer = {"ok": True, "text": result if isinstance(result, str) else json.dumps(result, default=str)}
    except MemoryError:
        answer = {"ok": False, "text": f"error: the tool ran past its {request['memory_mb']} MiB memory limit"}
    except BaseException as e:  # the model reads the error and may try again
        answer = {"ok": False, "text": f"error: {type(e).__name__}: {e}"}
    sys.stdout.write("\n" + json.dumps(answer) + "\n")


if __name__ == "__main__":
    _serve()
