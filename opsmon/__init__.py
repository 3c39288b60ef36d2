"""The core both services stand on: the config schema, the backup catalog, safe file writes and /metrics."""

__version__ = "0.1.0"
