"""passflow: the Adobe Pass REST API V2 cookbook, run server side for many devices."""

__version__ = "0.5.0"
