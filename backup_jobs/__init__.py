"""opsmon's backup jobs: verified SQLite backups, copies, restores and integrity checks."""
