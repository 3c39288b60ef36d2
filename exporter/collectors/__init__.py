"""The one registry of collectors; `--collector.NAME` / `--no-collector.NAME` flags come from it."""

from __future__ import annotations

from exporter.collectors import app, backup, business, database, footprint, gpu, logs, probes, process, system

# name -> module with build(config) returning a collector, or None when the config gives it nothing to do.
REGISTRY = {
    "system": system,
    "process": process,
    "gpu": gpu,
    "probes": probes,
    "logs": logs,
    "database": database,
    "backup": backup,
    "business": business,
    "app": app,
    "footprint": footprint,
}


def build_collectors(config, enabled: set[str]) -> list:
    """Collectors for the enabled names, in registry order, skipping those with nothing to do."""
    built = (REGISTRY[name].build(config) for name in REGISTRY if name in enabled)
    return [collector for collector in built if collector is not None]
