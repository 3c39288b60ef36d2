"""The soak's judgement on synthetic samples, and a short soak guard: a planted leak sampled for real is caught."""

from __future__ import annotations

import random

from bench.soak_judge import (alert_problems, cpu_per_scrape_rises, error_ratio_problem, judge_series, markdown,
                              per_scrape)
from bench.soak_sampler import Sampler, plot
from exporter.collectors.footprint import folder_bytes
from tests.conftest import start, stop, wait_for

MIB = 2**20
THREE_HOURS = [30.0 * i for i in range(361)]  # a 3-hour soak sampled every 30 s


def noisy(base: float, spread: float, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [base + rng.gauss(0, spread) for _ in THREE_HOURS]


def test_flat_memory_with_noise_passes():
    row = judge_series("exporter", "rss", THREE_HOURS, noisy(80 * MIB, 2 * MIB))
    assert row.verdict == "flat"


def test_a_slow_leak_fails():
    """3 MiB an hour under 2 MiB of noise: 9 MiB over the run, 2 GiB over 30 days."""
    values = [v + 3 * MIB * t / 3600 for t, v in zip(THREE_HOURS, noisy(80 * MIB, 2 * MIB))]
    row = judge_series("exporter", "rss", THREE_HOURS, values)
    assert row.verdict == "GROWS" and not row.passed
    assert 2.5 * MIB < row.slope_per_hour < 3.5 * MIB


def test_a_sawtooth_bounded_by_retention_passes_in_any_phase():
    """A folder that grows 1 GiB in 40 minutes and is cut back by retention, stopped at any point."""
    for phase in (0, 600, 1200, 1800):
        values = [1 * 2**30 + 2**30 * ((t + phase) % 2400) / 2400 for t in THREE_HOURS]
        assert judge_series("backups", "bytes", THREE_HOURS, values).verdict == "bounded", phase


def test_a_folder_that_only_grows_fails():
    values = [2**30 + 50 * MIB * t / 3600 for t in THREE_HOURS]
    assert judge_series("replica", "bytes", THREE_HOURS, values).verdict == "GROWS"


def test_a_folder_still_filling_its_retention_is_judged_by_its_size_when_retention_catches_up():
    """12 monthly backups taken hourly: in a 3-hour run the folder only grows, as it must; what counts is
    whether its size at 12 hours fits the disk."""
    values = [5 * MIB * t / 3600 for t in THREE_HOURS]  # 5 MiB an hour, 15 MiB at the end
    row = judge_series("backups", "bytes", THREE_HOURS, values, horizon_hours=12, disk_bytes=1024 * MIB)
    assert row.verdict == "bounded" and row.horizon_hours == 12
    assert abs(row.projected_30d - 60 * MIB) < MIB  # full at 12 h, and no larger after
    assert "retention fills in 12 h" in markdown([("bytes", row)])
    assert judge_series("backups", "bytes", THREE_HOURS, values, horizon_hours=12,
                        disk_bytes=50 * MIB).verdict == "GROWS"


def test_a_folder_growing_past_its_retention_horizon_fails():
    """Daily backups kept 7 at 5-minute intervals: past 35 minutes the folder must stop growing."""
    values = [5 * MIB * t / 3600 for t in THREE_HOURS]
    assert judge_series("backups", "bytes", THREE_HOURS, values, horizon_hours=35 / 60,
                        disk_bytes=1024**4).verdict == "GROWS"
    sawtooth = [MIB * min(t, 2100) / 2100 + MIB * (t % 300) / 300 / 7 for t in THREE_HOURS]
    assert judge_series("backups", "bytes", THREE_HOURS, sawtooth, horizon_hours=35 / 60,
                        disk_bytes=1024**4).verdict == "bounded"


def test_exporter_cpu_per_scrape_rising_is_caught_and_steady_is_not():
    scrapes = [2.0 * i for i in range(len(THREE_HOURS))]  # two scrapes a sample
    steady = [0.02 * n for n in scrapes]
    rising = [0.02 * n + 1e-6 * n * n for n in scrapes]
    times = THREE_HOURS[1:]
    assert not cpu_per_scrape_rises(times, per_scrape(steady, scrapes))
    assert cpu_per_scrape_rises(times, per_scrape(rising, scrapes))


def test_alerts_each_injected_once_and_resolved_and_nothing_else():
    injected = ["OpsmonExternalServiceDown", "OpsmonProcessDown", "OpsmonBackupCopyStale"]
    fine = [("OpsmonWatchdog", False), *((name, True) for name in injected)]
    assert alert_problems(injected, fine) == []
    twice = [*fine, ("OpsmonProcessDown", True)]
    assert alert_problems(injected, twice) == ["OpsmonProcessDown: fired 2 time(s) for 1 injection(s)"]
    unresolved = [(name, name != "OpsmonBackupCopyStale") for name in injected]
    assert alert_problems(injected, unresolved) == ["OpsmonBackupCopyStale: still firing at the end"]
    stray = [*fine, ("OpsmonDiskSpaceLow", True)]
    assert alert_problems(injected, stray) == ["OpsmonDiskSpaceLow: fired but was not injected"]
    patterns = [*fine, ("OpsmonLogPatternNew", True), ("OpsmonLogPatternNew", True)]
    assert alert_problems([*injected, "OpsmonLogPatternNew"], patterns) == []
    assert alert_problems(injected, patterns) == ["OpsmonLogPatternNew: fired but was not injected"]


def test_demo_error_ratio_limit():
    assert error_ratio_problem(10_000, 50) is None
    assert error_ratio_problem(10_000, 100) == "demo error ratio 1.00% is not under 1%"
    assert error_ratio_problem(0, 0) == "the demo served no request"


# A child that writes 1 MiB every 200 ms and keeps it (written, so the pages are resident); the other holds still.
LEAKING = ("import threading\nheld = []\npace = threading.Event()\n"
           "while True:\n    held.append(b\"x\" * 2**20)\n    pace.wait(0.2)\n")
FLAT = "import threading\nthreading.Event().wait()\n"


def test_short_soak_guard_catches_a_planted_leak_and_not_a_flat_process(tmp_path, python_env):
    """The real sampler on two real processes for about 20 s at a 0.5 s interval, then the judgement."""
    leaking = start(["-c", LEAKING], python_env)
    flat = start(["-c", FLAT], python_env)
    csv_path = tmp_path / "samples.csv"
    sampler = Sampler({"leaking": lambda: leaking.pid, "flat": lambda: flat.pid}, {"folder": lambda: folder_bytes(tmp_path)},
                      csv_path, interval=0.5)
    try:
        sampler.start()

        def enough():
            times = sampler.samples().get(("rss", "leaking"), ([], []))[0]
            return len(times) >= 40 and times[-1] - times[0] >= 20

        wait_for(enough, timeout=60, interval=0.5, what="40 samples over 20 s")
    finally:
        sampler.stop()
        stop(leaking)
        stop(flat)
    samples = sampler.samples()
    verdicts = {name: judge_series(name, "rss", *samples[("rss", name)]) for name in ("leaking", "flat")}
    assert verdicts["leaking"].verdict == "GROWS", markdown([("rss", verdicts["leaking"])])
    assert verdicts["flat"].verdict == "flat", markdown([("rss", verdicts["flat"])])
    for kind in ("fds", "threads", "cpu"):
        assert (kind, "leaking") in samples
    assert ("bytes", "folder") in samples
    assert {path.name for path in plot(samples, tmp_path / "plots")} >= {"leaking-rss.png", "flat-rss.png"}
