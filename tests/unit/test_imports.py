"""The two services stand on opsmon/ and never on each other, and the app's library stands on nothing of the
kit: every module's imports are read and checked."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import version

import pytest
from packaging.specifiers import SpecifierSet

from tests.conftest import REPO

FORBIDDEN = {"opsmon": {"exporter", "backup_jobs", "demo"}, "exporter": {"backup_jobs"}, "backup_jobs": {"exporter"},
             "bench": {"tests"}}
# What opsmon.instrument may import besides itself: it runs inside the app's processes and environment.
LIBRARY_MAY_IMPORT = set(sys.stdlib_module_names) | {"prometheus_client"}


def imported_modules(path) -> set[str]:
    """The modules a module imports by absolute name, at its top or inside functions alike."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.update(f"{node.module}.{alias.name}" if node.module == "opsmon" else node.module
                         for alias in node.names)
    return found


def imported_packages(path) -> set[str]:
    """The top-level packages a module imports."""
    return {name.split(".")[0] for name in imported_modules(path)}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_package_imports_one_it_must_not(package):
    crossings = {str(path.relative_to(REPO)): sorted(imported_packages(path) & FORBIDDEN[package])
                 for path in sorted((REPO / package).rglob("*.py"))}
    assert {module: names for module, names in crossings.items() if names} == {}


def test_the_check_sees_a_crossing(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from backup_jobs.catalog import x\n")
    assert "backup_jobs" in imported_packages(module)


def test_the_library_imports_only_itself_the_standard_library_and_prometheus_client():
    outside = {}
    for path in sorted((REPO / "opsmon" / "instrument").rglob("*.py")):
        names = {name for name in imported_modules(path)
                 if not name.startswith("opsmon.instrument") and name.split(".")[0] not in LIBRARY_MAY_IMPORT}
        if names:
            outside[str(path.relative_to(REPO))] = sorted(names)
    assert outside == {}


def test_the_library_check_sees_an_import_of_the_rest_of_opsmon(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from opsmon import config\nfrom opsmon.catalog import TIERS\n")
    assert imported_modules(module) == {"opsmon.config", "opsmon.catalog"}


def python_modules(*folders: str) -> list:
    return sorted(path for folder in folders for path in (REPO / folder).rglob("*.py"))


def test_the_log_layers_and_the_logs_tool_import_no_collector():
    users = [*python_modules("exporter/logs"), REPO / "exporter" / "logtool.py"]
    crossings = {str(path.relative_to(REPO)): sorted(name for name in imported_modules(path)
                                                    if name.startswith("exporter.collectors"))
                 for path in users}
    assert {module: names for module, names in crossings.items() if names} == {}


def test_only_the_pattern_layer_imports_drain3():
    importers = [str(path.relative_to(REPO)) for path in python_modules("opsmon", "exporter", "backup_jobs")
                 if any(name.split(".")[0] == "drain3" for name in imported_modules(path))]
    assert importers == ["exporter/logs/patterns.py"]


def test_drain3_is_kept_below_its_next_major_while_its_internals_are_used():
    requirement = re.search(r'"drain3([^"]*)"', (REPO / "pyproject.toml").read_text())
    allowed = SpecifierSet(requirement.group(1))
    installed = version("drain3")
    assert installed in allowed
    assert f"{int(installed.split('.')[0]) + 1}.0" not in allowed
