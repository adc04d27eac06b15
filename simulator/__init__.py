"""A stand-in for Adobe Pass DCR and REST API V2, for development, demos, tests and benchmarks."""

from simulator.app import create_app
from simulator.config import SimConfig

__all__ = ["SimConfig", "create_app"]
