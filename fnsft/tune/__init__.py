"""Sweeps: the pipeline's ``tune:`` section, run with Ray Tune (``fnsft-pipeline --tune``).

``space`` reads and checks the section (no Ray), ``trial`` is the function trainable each trial
runs, ``results`` writes the table and ``best_config.yaml``, ``sweep`` ties them together.
"""

from fnsft.tune.space import SweepConfig
from fnsft.tune.sweep import run_sweep, validate_sweep

__all__ = ["SweepConfig", "run_sweep", "validate_sweep"]
