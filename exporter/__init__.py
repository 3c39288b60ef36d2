"""opsmon's exporter: system, application, business, database and backup metrics for Prometheus."""

__version__ = "0.1.0"
