"""Log files as the logs collector and `opsmon-exporter logs` read them: line formats, patterns, tailing."""
