"""The soak's verdicts: pure functions over samples, alert episodes and counts; the table in Markdown."""

from __future__ import annotations

import math
from dataclasses import dataclass

HOUR = 3600.0
MONTH_HOURS = 30 * 24.0
# A slope is "significant" when it is more than this many standard errors above 0 (about 99.9 %
# one-sided for the sample counts of a soak).
SIGNIFICANT_T = 3.0
# Growth we accept over 30 days even when it is significant: a fraction of the start value, and at
# least a floor per kind (a page of memory or one descriptor is not a leak).
TOLERATED_FRACTION = 0.10
TOLERATED_FLOOR = {"rss": 64 * 2**20, "fds": 16, "threads": 4, "bytes": 256 * 2**20}
# Samples of the first part of the run are left out: caches fill, retention has not run yet.
WARM_UP_FRACTION = 0.2


@dataclass(frozen=True)
class Row:
    series: str
    start: float
    end: float
    slope_per_hour: float
    stderr_per_hour: float
    projected_30d: float
    verdict: str  # "flat", "bounded" or "GROWS"
    horizon_hours: float | None = None  # a folder's retention horizon, when the run ended before it

    @property
    def passed(self) -> bool:
        return self.verdict != "GROWS"


def least_squares(times: list[float], values: list[float]) -> tuple[float, float]:
    """Slope of values over times (per second) and its standard error; (0, 0) under three points."""
    n = len(times)
    if n < 3:
        return 0.0, 0.0
    mean_t = sum(times) / n
    mean_v = sum(values) / n
    sxx = sum((t - mean_t) ** 2 for t in times)
    if sxx == 0:
        return 0.0, 0.0
    slope = sum((t - mean_t) * (v - mean_v) for t, v in zip(times, values)) / sxx
    intercept = mean_v - slope * mean_t
    residual = sum((v - intercept - slope * t) ** 2 for t, v in zip(times, values))
    return slope, math.sqrt(residual / (n - 2) / sxx)


def after_warm_up(times: list[float], values: list[float], fraction: float = WARM_UP_FRACTION):
    """The samples after the first `fraction` of the run."""
    if not times:
        return [], []
    cut = times[0] + (times[-1] - times[0]) * fraction
    kept = [(t, v) for t, v in zip(times, values) if t >= cut]
    return [t for t, _ in kept], [v for _, v in kept]


def peak_slope(times: list[float], values: list[float]) -> float:
    """Per second, how much the highest value of the second half exceeds that of the first half: a
    sawtooth that retention cuts back has the same peaks in both, whatever its phase."""
    if len(times) < 4:
        return 0.0
    middle = times[0] + (times[-1] - times[0]) / 2
    early = [v for t, v in zip(times, values) if t < middle]
    late = [v for t, v in zip(times, values) if t >= middle]
    return (max(late) - max(early)) / ((times[-1] - times[0]) / 2)


def tolerated(start: float, kind: str) -> float:
    """The 30-day growth accepted even when it is real: a fraction of the start, at least a floor."""
    return max(TOLERATED_FRACTION * abs(start), TOLERATED_FLOOR.get(kind, 0.0))


def grows(times: list[float], values: list[float], kind: str) -> bool:
    """Growth beyond noise, both: the least-squares slope more than SIGNIFICANT_T standard errors above 0,
    and the peaks rising by more than the tolerated growth over 30 days. A steady creep of a page, a
    noisy flat line and a sawtooth bounded by retention all pass; a leak fails."""
    slope, stderr = least_squares(times, values)
    significant = slope > SIGNIFICANT_T * stderr
    return significant and peak_slope(times, values) * HOUR * MONTH_HOURS > tolerated(values[0], kind)


def judge_series(series: str, kind: str, times: list[float], values: list[float],
                 warm_up: float = WARM_UP_FRACTION, horizon_hours: float | None = None,
                 disk_bytes: float | None = None) -> Row:
    """One process metric or folder: its slope after the warm-up and the verdict.

    `horizon_hours`: for a folder its retention bounds, how long until retention removes as much as is
    added (12 monthly backups taken hourly: 12 h; Prometheus: its retention time). Within that time the
    folder grows as it must, so it is judged by its size at the horizon, which must fit `disk_bytes`;
    past it, only the samples after the horizon count, and they must not grow."""
    elapsed_hours = (times[-1] - times[0]) / HOUR if len(times) > 1 else 0.0
    if horizon_hours is not None and elapsed_hours >= horizon_hours:
        warm_up = max(warm_up, horizon_hours / elapsed_hours)
    kept_t, kept_v = after_warm_up(times, values, warm_up)
    slope, stderr = least_squares(kept_t, kept_v)
    start, end = (values[0], values[-1]) if values else (0.0, 0.0)
    if horizon_hours is not None and elapsed_hours < horizon_hours:
        filled = end + max(slope, 0.0) * HOUR * (min(horizon_hours, MONTH_HOURS) - elapsed_hours)
        verdict = "bounded" if disk_bytes is None or filled <= disk_bytes else "GROWS"
        return Row(series, start, end, slope * HOUR, stderr * HOUR, filled, verdict, horizon_hours)
    failing = bool(kept_v) and grows(kept_t, kept_v, kind)
    verdict = "GROWS" if failing else ("bounded" if kind == "bytes" else "flat")
    return Row(series, start, end, slope * HOUR, stderr * HOUR, end + slope * HOUR * MONTH_HOURS, verdict)


def per_scrape(cpu_seconds: list[float], scrapes: list[float]) -> list[float]:
    """CPU seconds each scrape cost between two samples (skipping intervals without a scrape)."""
    costs = []
    for (cpu0, n0), (cpu1, n1) in zip(zip(cpu_seconds, scrapes), zip(cpu_seconds[1:], scrapes[1:])):
        if n1 > n0:
            costs.append((cpu1 - cpu0) / (n1 - n0))
    return costs


def cpu_per_scrape_rises(times: list[float], costs: list[float]) -> bool:
    """The exporter's CPU per scrape growing by more than half its start over 30 days, beyond noise."""
    kept_t, kept_v = after_warm_up(times, costs)
    if len(kept_v) < 4:
        return False
    slope, stderr = least_squares(kept_t, kept_v)
    return slope > SIGNIFICANT_T * stderr and peak_slope(kept_t, kept_v) * HOUR * MONTH_HOURS > 0.5 * kept_v[0]


def alert_problems(injected: list[str], episodes: list[tuple[str, bool]], ignored=("OpsmonWatchdog",),
                   at_least=("OpsmonLogPatternNew",)) -> list[str]:
    """Each injected alert fired and resolved once per injection; nothing else fired.
    `episodes`: (alertname, resolved) for each time an alert started firing. Alerts in `at_least` fire once
    per series (a new log pattern each), and the app's own first errors are new patterns too: at least once."""
    problems = []
    for name in sorted(set(injected)):
        seen = [resolved for alert, resolved in episodes if alert == name]
        wrong_count = len(seen) < injected.count(name) if name in at_least else len(seen) != injected.count(name)
        if wrong_count:
            problems.append(f"{name}: fired {len(seen)} time(s) for {injected.count(name)} injection(s)")
        if not all(seen):
            problems.append(f"{name}: still firing at the end")
    for name in sorted({alert for alert, _ in episodes} - set(injected) - set(ignored)):
        problems.append(f"{name}: fired but was not injected")
    return problems


def error_ratio_problem(requests: int, errors: int, limit: float = 0.01) -> str | None:
    if requests == 0:
        return "the demo served no request"
    ratio = errors / requests
    return None if ratio < limit else f"demo error ratio {ratio:.2%} is not under {limit:.0%}"


def _human(value: float, kind: str) -> str:
    if kind in ("rss", "bytes"):
        return f"{value / 2**20:.1f} MiB"
    return f"{value:.3g}"


def _verdict(row: Row) -> str:
    if row.horizon_hours is None:
        return row.verdict
    return f"{row.verdict} (retention fills in {row.horizon_hours:g} h: judged by its size then)"


def markdown(rows: list[tuple[str, Row]]) -> str:
    """The table: (kind, row) pairs, one line each."""
    lines = ["| series | start | end | slope/h (± s.e.) | 30-day projection | verdict |",
             "|---|---|---|---|---|---|"]
    for kind, row in rows:
        lines.append(f"| {row.series} | {_human(row.start, kind)} | {_human(row.end, kind)} | "
                     f"{_human(row.slope_per_hour, kind)} ± {_human(row.stderr_per_hour, kind)} | "
                     f"{_human(row.projected_30d, kind)} | {_verdict(row)} |")
    return "\n".join(lines)
