"""stax: a sampling profiler for native Linux programs."""

__version__ = "0.1.0"
