"""The golden files that need real processes: app metrics recorded by worker processes, and every golden
file through promtool."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import GOLDEN, assert_golden, exposition


def test_app_metrics_from_worker_processes(tmp_path):
    """Recorded by three real processes in multiprocess mode, summed by the exporter's app collector."""
    from exporter.collectors.app import AppCollector

    directory = tmp_path / "multiproc"
    directory.mkdir()
    record = (
        "from opsmon import instrument\n"
        "import sys\n"
        "m = instrument.metrics()\n"
        "m.requests.labels('process_video').inc(10)\n"
        "m.request_errors.labels('process_video', 'server').inc()\n"
        "m.duration.labels('process_video').observe(0.2)\n"
        "instrument.record_error(instrument.ExternalServiceError('down'))\n"
    )
    for _ in range(3):
        subprocess.run([sys.executable, "-c", record], check=True,
                       env={"PROMETHEUS_MULTIPROC_DIR": str(directory), "PATH": "/usr/bin:/bin"})
    # The order of families follows the order the folder lists its files: sort for a stable file.
    assert_golden("app", exposition(AppCollector(directory), sort=True))


def test_golden_files_pass_promtool():
    goldens = sorted(GOLDEN.glob("*.prom"))
    assert len(goldens) == 10, [g.name for g in goldens]
    for golden in goldens:
        result = subprocess.run(["promtool", "check", "metrics"], stdin=golden.open("rb"), capture_output=True)
        problems = (result.stdout + result.stderr).decode().splitlines()
        assert not problems, f"{golden.name}: {problems}"
        # Exit 3 means lint findings only; anything else is a parse error.
        assert result.returncode in (0, 3), f"{golden.name}: promtool exited {result.returncode}"
