"""Python client for FMU Gateway."""

__version__ = "0.1.0"
