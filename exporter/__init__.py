"""opsmon's exporter: system, application, business, database and backup metrics for Prometheus."""

from opsmon import __version__

__all__ = ["__version__"]
