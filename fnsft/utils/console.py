"""What a Ray worker or actor writes onto the driver's console: one line at a time, and little else."""

from __future__ import annotations

import logging
import sys


def say(line: str) -> None:
    """Write ``line`` to stdout, which Ray forwards to the driver once.

    Inside Ray Train V2 workers ``print`` is patched to also go through Train's logger, so a
    printed progress line shows up twice on the driver; writing to stdout directly does not.
    """
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def quiet_libraries(datasets: bool = True) -> None:
    """Workers' output is forwarded to the driver: keep it to our progress and real warnings.
    ``datasets=False``: a process that never builds a ``datasets.Dataset`` (the role actors) skips
    importing it (≈0.4 s of CPU, pandas and pyarrow with it)."""
    import importlib.util
    import warnings

    import transformers

    if datasets and importlib.util.find_spec("datasets") is not None:  # vLLM's venv (generation role) has none
        _quiet_datasets()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    logging.getLogger("ray.train").setLevel(logging.WARNING)


def _quiet_datasets() -> None:
    import datasets

    datasets.disable_progress_bars()
    # Workers keep no dataset cache, so fingerprints need not be content hashes. Hashing TRL's
    # map functions with dill runs dis.dis() under a stdout capture that Ray's worker stdout
    # escapes, flooding the driver's console with bytecode; random fingerprints avoid it.
    import datasets.arrow_dataset
    import datasets.fingerprint as fingerprint

    datasets.disable_caching()

    def random_fingerprint(*args, **kwargs):
        return fingerprint.generate_random_fingerprint()

    fingerprint.update_fingerprint = datasets.arrow_dataset.update_fingerprint = random_fingerprint
    # A new Dataset hashes its whole Arrow table (dill pickles a local function: same bytecode flood).
    fingerprint.generate_fingerprint = datasets.arrow_dataset.generate_fingerprint = random_fingerprint
