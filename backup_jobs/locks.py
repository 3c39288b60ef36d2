"""One job at a time on a backup directory: an flock whose file says who holds it."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from opsmon import files
from opsmon.exits import EXIT_BUSY, Failure

LOCK_FILE = ".job.lock"


class LockHeld(Failure):
    """Another job holds the lock; the message says which, since when, and its pid."""

    exit_status = EXIT_BUSY


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"'{info['job']}' (pid {info['pid']}, since {info['since']})"
    except (ValueError, KeyError, OSError):
        return "another job"


@contextlib.contextmanager
def job_lock(directory: Path, job: str, wait_seconds: float = 0.0) -> Iterator[None]:
    """Hold the directory's job lock while the block runs; LockHeld if it stays taken for `wait_seconds`.

    The kernel drops an flock when its holder dies, so a crashed or killed job never leaves it held.
    A lock file that is a link is refused (files.UnsafePath), never opened: the lock is truncated
    when taken, and its target could be the live database.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fd = files.open_regular(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockHeld(f"{directory}: {_holder(fd)} is running; try again when it has finished") from None
                time.sleep(0.1)
        since = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"job": job, "pid": os.getpid(), "since": since}).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
