"""Backup and restore of a 1 GB demo database, side by side with the floor and the usual shell recipe.

    .venv/bin/python bench/backup_bench.py [--videos 9000000]

(a) floor: read the database file once and gzip it with the same library (python-isal);
(b) shell: sqlite3 db ".backup x"; gzip -6 x; gzip -t x.gz;
(c) ours: opsmon's verified backup (snapshot, compress, hash, read back, integrity_check);
(d) ours: a full restore into the live database, with its verification, safety backup and proof (the
    live database compared with the verified backup page by page); (d') the same while an application's
    reader holds an old snapshot throughout, so the WAL cannot be checkpointed and the restore proves
    itself by its checks, with integrity_check on the live database.
Targets: (c) at least 2x faster than (b), and within 4x of (a); (d) within 5x of (a).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing, contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from backup_jobs import gzipfile  # noqa: E402
from backup_jobs.jobs import Jobs  # noqa: E402
from bench.seeded import database  # noqa: E402
from opsmon.config import parse_config  # noqa: E402


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


@contextmanager
def reader_holding_a_snapshot(database: Path):
    """An application's connection in the middle of a read transaction from before the restore to after it."""
    with closing(sqlite3.connect(database, isolation_level=None)) as reader:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM sqlite_master").fetchone()
        yield
        reader.execute("COMMIT")


def drop_caches_if_possible() -> None:
    """Every run starts from the same cache state where the kernel allows it (root); else all run warm."""
    try:
        with open("/proc/sys/vm/drop_caches", "w") as control:
            subprocess.run(["sync"], check=True)
            control.write("3\n")
    except OSError:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=9_000_000, help="about 115 MB per million videos")
    args = parser.parse_args()
    source = database(args.videos)
    work = Path(tempfile.mkdtemp(prefix="opsmon-backup-bench-", dir=source.parent))
    try:
        live = work / "live.db"
        shutil.copy(source, live)
        size = live.stat().st_size
        jobs = Jobs(parse_config({"database": {"path": str(live)}, "backups": {"directory": str(work / "b")}},
                                 "bench", work))
        level = jobs.config.backups.compression_level

        drop_caches_if_possible()
        floor = timed(lambda: gzipfile.compress(live, work / "floor.gz", level))
        drop_caches_if_possible()
        shell = timed(lambda: (subprocess.run(["sqlite3", str(live), f".backup {work / 'x.db'}"], check=True),
                               subprocess.run(["gzip", "-6", str(work / "x.db")], check=True),
                               subprocess.run(["gzip", "-t", str(work / "x.db.gz")], check=True)))
        drop_caches_if_possible()
        created = {}
        ours = timed(lambda: created.setdefault("record", jobs.backup("daily")))
        drop_caches_if_possible()
        with jobs.locked("bench restore"):
            restore = timed(lambda: jobs.restore_backup(created["record"].id))
        drop_caches_if_possible()
        with jobs.locked("bench restore"), reader_holding_a_snapshot(live):
            restore_held = timed(lambda: jobs.restore_backup(created["record"].id))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\ndatabase {size / 2**30:.2f} GiB ({args.videos:,} videos), {os.cpu_count()} cores, "
          f"isal level {level}\n")
    print("| run | seconds | vs (a) floor | vs (b) shell | target |")
    print("|---|---|---|---|---|")
    rows = [("(a) read + gzip (floor)", floor, ""), ("(b) sqlite3 .backup + gzip -6 + gzip -t", shell, ""),
            ("(c) opsmon verified backup", ours, "<= 4x (a), >= 2x faster than (b)"),
            ("(d) opsmon full restore, verified, proven page by page", restore, "<= 5x (a)"),
            ("(d') the same while a reader holds the WAL (integrity_check)", restore_held, "")]
    for label, seconds, target in rows:
        print(f"| {label} | {seconds:.2f} | {seconds / floor:.2f}x | {seconds / shell:.2f}x | {target} |")
    met = ours <= 4 * floor and shell / ours >= 2 and restore <= 5 * floor
    print(f"\n(b)/(c) = {shell / ours:.2f}: ours is {shell / ours:.1f}x faster than the shell recipe")
    print("targets met" if met else "TARGETS MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
