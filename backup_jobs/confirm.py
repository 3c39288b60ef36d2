"""The question a restore asks a person at a terminal: what it replaces, and whether the app is writing now."""

from __future__ import annotations

import sqlite3
import sys
import time
from contextlib import closing
from pathlib import Path

from backup_jobs.humanize import size_text
from backup_jobs.restore import Report

RECENT_WRITE_SECONDS = 5  # a database or WAL written this recently is taken for an app at work


def app_writing(database: Path, clock=time.time) -> str | None:
    """How the app shows it is writing to `database` now (a writer holding its lock, a file just written), or None."""
    if not database.exists():  # nothing to write to (and a connection would create it)
        return None
    try:
        with closing(sqlite3.connect(database, timeout=0, isolation_level=None)) as probe:
            probe.execute("BEGIN IMMEDIATE")  # taken and given back at once when nobody writes
            probe.execute("ROLLBACK")
    except sqlite3.OperationalError as err:
        if "locked" in str(err) or "busy" in str(err):
            return "a writer holds the write lock"
    for part in (Path(f"{database}-wal"), database):
        if part.exists() and clock() - part.stat().st_mtime < RECENT_WRITE_SECONDS:
            return f"{part.name} was written {max(0, clock() - part.stat().st_mtime):.0f}s ago"
    return None


def question(database: Path, preview: Report, live_bytes: int, writing: str | None) -> str:
    """What the restore replaces, table by table, from the dry run `preview`."""
    tables = preview.tables or sorted(set(preview.row_counts_before) | set(preview.row_counts_after))
    width = max(map(len, tables), default=0)
    lines = [f"This restore replaces {'tables ' + ', '.join(preview.tables) if preview.tables else 'all'} of "
             f"{database} ({size_text(live_bytes)} now) with {preview.source}.",
             "  the app is writing now: " + writing + " (the restore may overwrite what it writes meanwhile)" if writing
             else f"  the app wrote nothing in the last {RECENT_WRITE_SECONDS}s",
             "  rows now -> after the restore:"]
    lines += [f"    {t.ljust(width)}  {preview.row_counts_before.get(t, 0)} -> {preview.row_counts_after.get(t, 0)}"
              for t in tables]
    lines += [f"  {note}" for note in preview.notes]
    lines.append("A safety backup of the database as it is now is taken first.")
    return "\n".join(lines)


def ask(text: str) -> bool:
    """Show `text` on stderr and ask; only a yes goes ahead (an end of input, or Ctrl-C, is a no)."""
    print(text, file=sys.stderr)
    print("Restore? [y/N] ", end="", file=sys.stderr, flush=True)
    try:
        answer = sys.stdin.readline()
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return False
    return answer.strip().lower() in ("y", "yes")
