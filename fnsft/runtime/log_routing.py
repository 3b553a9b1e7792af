"""What the workers' output shows on the driver's console, and what only the log file keeps.

Ray forwards every line that a worker, actor or Train controller prints to the driver. Most of it
is bookkeeping a person does not need: Ray Train's ``TrainingReport(...)`` dumps and worker-group
start-up lines, bitsandbytes' kernel notices, DeepSpeed's accelerator and op-build lines, Ray's
internal actor warnings (``core_worker.cc``, the placement-group cleaner's State-API tracebacks).
:func:`route_worker_output` sends every forwarded line to ``pipeline_training.log`` and lets only
the rest reach the console; with ``log_level: DEBUG`` the console shows everything.
"""

from __future__ import annotations

import functools
import logging
import re

# Console noise, by the line's text.
NOISE = re.compile("|".join([
    r"TrainingReport\(", r"Reporting training result", r"gemm_4bit|kernels-community|pip install kernels",
    r"Setting accelerator to CPU", r"deepspeed_shm_comm_op built", r"core_worker\.cc", r"PreemptionWatcher",
    r"Requesting resources:", r"training worker group", r"^\s*- \(ip=", r"Setting up process group",
    r"generated new fontManager", r"Matplotlib is building the font cache", r"Registered dataset logger",
    r"Running in local mode",
]))
# Ray internals whose every line is noise (their real failures surface as the job's error).
NOISY_ACTORS = ("PlacementGroupCleaner",)
# Ray's own driver-side messages at start-up.
_RAY_DRIVER_NOISE = re.compile(r"Token authentication is enabled|authentication token|Started a local Ray instance")

_state = {"verbose": False}


# Ray says of some of its tracebacks that they are "safe to ignore" (a busy machine): the console
# drops the message and the traceback that follows it from that process.
_IGNORABLE = re.compile(r"safe to ignore")
_TRACEBACK = re.compile(r"^(Traceback|\s|\^)|^[\w.]+(Error|Exception)\b")
_skipping: set = set()


def is_noise(line: str, actor: str = "", pid=None) -> bool:
    if _IGNORABLE.search(line):
        _skipping.add(pid)
        return True
    if pid in _skipping:
        if _TRACEBACK.match(line):
            if not line[:1].isspace() and not line.startswith(("Traceback", "^")):
                _skipping.discard(pid)  # the exception line ends the traceback
            return True
        _skipping.discard(pid)
    return any(a in (actor or "") for a in NOISY_ACTORS) or bool(NOISE.search(line))


class _RayDriverFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _RAY_DRIVER_NOISE.search(record.getMessage())


def _to_log_file(actor: str, pid, lines: list[str]) -> None:
    """Every forwarded line into pipeline_training.log (the fnsft logger's file handlers only)."""
    files = [h for h in logging.getLogger("fnsft").handlers if isinstance(h, logging.FileHandler)]
    for line in lines if files else ():
        record = logging.LogRecord("fnsft.ray", logging.INFO, __file__, 0, "(%s pid=%s) %s",
                                   (actor or "worker", pid, line), None)
        for h in files:
            h.handle(record)


def _route(print_fn, data: dict) -> None:
    actor = data.get("actor_name") or data.get("task_name") or ""
    _to_log_file(actor, data.get("pid"), data.get("lines", []))
    if _state["verbose"]:
        return print_fn(data)
    lines = [ln for ln in data.get("lines", []) if not is_noise(ln, actor, data.get("pid"))]
    if lines:
        print_fn({**data, "lines": lines})


def quiet_driver_libraries() -> None:
    """No progress bars or kernel notices from the libraries the driver itself uses."""
    # The driver imports bitsandbytes too (RL roles, QLoRA checks): its kernel notice is not ours.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    logging.getLogger("DeepSpeed").setLevel(logging.ERROR)  # "Setting accelerator to CPU" on save
    try:  # the report loads each stage's model in the driver: no "Loading weights" bar
        import transformers

        transformers.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass
    try:
        import datasets  # the driver reads data files: no "Generating train split" bars

        datasets.disable_progress_bars()
    except ImportError:  # pragma: no cover
        pass


def route_worker_output(verbose: bool, quiet_libraries: bool = True) -> bool:
    """Install the console filter for this driver (before or after ``ray.init``);
    ``quiet_libraries``: also :func:`quiet_driver_libraries` (imports transformers, ≈1-3 s;
    the pipeline does that beside Ray's start instead).

    Returns whether the forwarded lines are routed (:mod:`fnsft.compat.ray_logging`: on a Ray
    that hook was not checked against, Ray prints every line itself, and the log file gets none).
    """
    from fnsft.compat.ray_logging import wrap_worker_output_printer

    if not verbose:
        for handler in logging.getLogger("ray").handlers:
            if not any(isinstance(f, _RayDriverFilter) for f in handler.filters):
                handler.addFilter(_RayDriverFilter())
        if quiet_libraries:
            quiet_driver_libraries()

    _state["verbose"] = verbose
    return wrap_worker_output_printer(lambda printer: functools.partial(_route, printer))
