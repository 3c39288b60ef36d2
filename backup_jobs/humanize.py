"""What a person reads: sizes (`77.1 MiB`), ages (`3h 12m`), and progress bars on a terminal.

Exact bytes and ISO 8601 times stay in every `--json` and the API; these are for eyes only.
"""

from __future__ import annotations

import contextlib
import threading
from datetime import datetime, timezone
from typing import Iterator

from tqdm import tqdm

_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


def size_text(size: int | float | None) -> str:
    """Bytes as a person reads them: `512 B`, `4.0 KiB`, `77.1 MiB` (powers of 1024, one decimal)."""
    if size is None:
        return "unknown"
    if abs(size) < 1024:
        return f"{int(size)} B"
    for unit in _UNITS:
        size /= 1024
        if abs(size) < 1024 or unit == _UNITS[-1]:
            return f"{size:.1f} {unit}"
    raise AssertionError("unreachable")


def age_text(seconds: float) -> str:
    """A duration as a person reads it, to two units: 2d 3h, 4h 12m, 5m 3s."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {seconds % 60}s"


def plural(count: int, noun: str) -> str:
    """`1 backup`, `3 backups`, `0 backups`."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def seconds_text(seconds: float) -> str:
    """A short duration to a tenth of a second (`3.1 s`), a longer one as age_text (`1m 12s`)."""
    return f"{seconds:.1f} s" if seconds < 60 else age_text(seconds)


def ago_text(moment: float | None, now: float) -> str:
    """`3h 12m ago`, or `never` when there is no moment."""
    return "never" if moment is None else f"{age_text(now - moment)} ago"


def moment_text(moment: float) -> str:
    """A Unix time as `2026-11-26 10:12 UTC`: the minute is what a person compares."""
    return datetime.fromtimestamp(moment, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


# ---- progress ----------------------------------------------------------------------------------
# Whether bars are drawn is a property of the process's terminal, like logging's handlers: the command
# line sets it once (--quiet), and every job thread (a restore's safety backup runs on one) obeys it.

_quiet = False  # --quiet: no bars, even on a terminal
_overall: list[tqdm] = []  # the bar of a whole run (verify --all), which every byte bar also moves
_lock = threading.Lock()


def set_quiet(quiet: bool) -> None:
    """Quiet: no bars at all. Otherwise bars go to stderr when it is a terminal, never to a pipe or file."""
    global _quiet
    _quiet = bool(quiet)


def progress_bar(description: str, total: int | None, unit: str = "B") -> tqdm:
    """A bar of bytes done, rate and time left, on stderr when it is a terminal; nothing at all otherwise.
    It leaves no line behind, so stdout's last line (a backup id, a restore's summary) stays as it was."""
    bar = tqdm(total=total, desc=description, unit=unit, unit_scale=unit == "B", unit_divisor=1024,
               disable=True if _quiet else None, leave=False, dynamic_ncols=True)
    with _lock:
        parents = list(_overall)
    if parents and not bar.disable:
        own_update = bar.update

        def update(n: int = 1) -> bool | None:
            for parent in parents:
                parent.update(n)
            return own_update(n)

        bar.update = update
    return bar


@contextlib.contextmanager
def overall(description: str, total: int) -> Iterator[tqdm]:
    """A bar over a whole run of several jobs (bytes of every backup in `verify --all`): each byte bar
    opened inside it moves it too, so the person sees the time left for all of them."""
    bar = progress_bar(description, total)
    with _lock:
        _overall.append(bar)
    try:
        yield bar
    finally:
        with _lock:
            _overall.remove(bar)
        bar.close()
