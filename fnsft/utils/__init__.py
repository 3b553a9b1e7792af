"""Leaf helpers shared by every layer: console lines from Ray workers, quieting libraries, plots.

Imports nothing from fnsft except :mod:`fnsft.errors`, so any module may use it.
"""
