"""Every module of backup_jobs imports on its own, in a fresh interpreter: no import cycle."""

from __future__ import annotations

from tests.conftest import REPO


def test_backup_jobs_imports_without_a_cycle():
    """cli -> service -> console -> jobs: every import at the top of its module, and still importable
    one by one in any order (a cycle shows as 'partially initialized module')."""
    import importlib
    import subprocess
    import sys

    modules = sorted(p.relative_to(REPO).with_suffix("").as_posix().replace("/", ".")
                     for p in (REPO / "backup_jobs").rglob("*.py") if p.name != "__main__.py")
    for module in modules:
        result = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=REPO, capture_output=True, text=True)
        assert result.returncode == 0, f"{module}: {result.stderr}"
    assert importlib.import_module("backup_jobs.cli")
