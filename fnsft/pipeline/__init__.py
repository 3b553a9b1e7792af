"""The pipeline driver and stage registry."""

from fnsft.pipeline.driver import Pipeline

__all__ = ["Pipeline"]
