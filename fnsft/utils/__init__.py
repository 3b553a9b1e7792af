"""Leaf helpers shared by every layer: console lines from Ray workers, quieting libraries, plots,
run-state files written atomically (atomic), the output_dir lock (run_lock), SIGTERM as an
exception (stop) and the one line an error shows (one_line).

Imports nothing from fnsft except :mod:`fnsft.errors`, so any module may use it.
"""
