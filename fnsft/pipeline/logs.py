"""Console and ``<output_dir>/pipeline_training.log`` logging."""

from __future__ import annotations

import logging
import os
import sys

LOG_FILE = "pipeline_training.log"
_FORMAT = "%(asctime)s | %(levelname)s | %(name)s | %(message)s"


def setup_logging(level: str, output_dir: str | None = None) -> logging.Logger:
    logger = logging.getLogger("fnsft")
    logger.setLevel(level)
    logger.propagate = False
    for h in list(logger.handlers):
        if getattr(h, "_fnsft", False):
            logger.removeHandler(h)
            h.close()
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter("%(asctime)s | %(levelname)s | %(message)s", "%H:%M:%S"))
    console._fnsft = True
    logger.addHandler(console)
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        fh = logging.FileHandler(os.path.join(output_dir, LOG_FILE))
        fh.setFormatter(logging.Formatter(_FORMAT))
        fh._fnsft = True
        logger.addHandler(fh)
    return logger
