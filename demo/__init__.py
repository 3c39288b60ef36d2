"""A simulated video pipeline on SQLite, monitored by opsmon: the embedded default of `make run`."""
