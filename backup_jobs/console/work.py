"""What the console's pages and API share: the audit trail, background jobs, and the front page's facts."""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

from flask import has_request_context, request

from backup_jobs import report, sqlitefile
from backup_jobs.copies import Location
from backup_jobs.humanize import ago_text, moment_text, size_text
from backup_jobs.jobs import Jobs
from opsmon.catalog import TIERS, to_iso, to_timestamp

log = logging.getLogger(__name__)

LOCK_WAIT_SECONDS = 120
# Each field of an audit line at most this long: a stranger's 8 MB user name must not fill the backup disk.
AUDIT_FIELD_CHARS = 200
CUT = "…[cut]"


class Audit:
    """Every action, as JSON lines in the backup directory, and counted for /metrics."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.counts: Counter = Counter()
        self._lock = threading.Lock()

    def record(self, user: str | None, action: str, result: str, target: str = "", detail: str = "") -> None:
        entry = {"time": to_iso(time.time()), "user": user, "action": action, "target": target,
                 "result": result, "detail": detail,
                 "remote": request.remote_addr if has_request_context() else None}
        entry = {key: _bounded(value) for key, value in entry.items()}
        with self._lock:
            self.counts[(action, result)] += 1
            with open(self.path, "a") as out:
                out.write(json.dumps(entry) + "\n")

    def entries(self, limit: int = 200) -> list[dict]:
        """The newest entries first. A line that cannot be read (cut by a crash, edited) shows as such."""
        try:
            lines = self.path.read_bytes().splitlines()
        except FileNotFoundError:
            return []
        entries = []
        for line in reversed(lines[-limit:]):
            try:
                entry = json.loads(line)
            except ValueError:
                entry = None
            if not isinstance(entry, dict):
                entry = {"result": "unreadable", "detail": line[:200].decode("utf-8", "replace")}
            entries.append({key: str(entry.get(key) or "") for key in
                            ("time", "user", "action", "target", "result", "detail")})
        return entries


def _bounded(value: str | None) -> str | None:
    """The value as logged: cut to AUDIT_FIELD_CHARS, marked so nobody reads a cut name as whole."""
    if value is None or len(value) <= AUDIT_FIELD_CHARS:
        return value
    return value[: AUDIT_FIELD_CHARS - len(CUT)] + CUT


class Busy(Exception):
    def __init__(self, job_id: str):
        super().__init__(job_id)
        self.job_id = job_id


class JobRunner:
    """Long actions in the background, one at a time through the job lock; one restore at a time."""

    def __init__(self, jobs: Jobs, audit: Audit):
        self.jobs = jobs
        self.audit = audit
        self._runs: dict[str, dict] = {}
        self._lock = threading.Lock()

    def _start(self, kind: str, user: str, target: str, action, asked=None) -> str:
        """Start `action` in the background; its return value (text, or a restore Report) is the result.
        `asked` is the request behind it (a restore's), kept for its page."""
        with self._lock:
            if kind == "restore":
                running = [i for i, r in self._runs.items() if r["kind"] == "restore" and r["status"] == "running"]
                if running:
                    raise Busy(running[0])
            job_id = secrets.token_hex(8)
            self._runs[job_id] = {"id": job_id, "kind": kind, "target": target, "user": user, "status": "running",
                                  "started_at": to_iso(time.time()), "finished_at": None, "result": None,
                                  "report": None, "asked": asked}
        threading.Thread(target=self._run, args=(job_id, action), daemon=True).start()
        return job_id

    def backup(self, user: str, tier: str) -> str:
        return self._start("backup", user, tier, lambda: f"backup {self.jobs.backup(tier).id} made and verified")

    def verify(self, user: str, ids: list[str] | None) -> str:
        """Verify those backups (all with None)."""
        return self._start("verify", user, ids[0] if ids else "all", lambda: self._verified(ids))

    def restore(self, user: str, wanted) -> str:
        """A restore, or its preview when `wanted` is a dry run."""
        return self._start("preview" if wanted.dry_run else "restore", user, wanted.describe(),
                          lambda: self.jobs.restore(wanted), wanted)

    def _verified(self, ids: list[str] | None) -> str:
        problems = self.jobs.verify(ids)
        if problems:
            raise RuntimeError("; ".join(problems))
        return "every backup verified" if ids is None else f"backup {ids[0]} verified"

    def _run(self, job_id: str, action) -> None:
        run = self._runs[job_id]
        try:
            with self.jobs.locked(f"console {run['kind']} {run['target']} by {run['user']}",
                                  wait_seconds=LOCK_WAIT_SECONDS, via="console"):
                outcome = action()
            status = "succeeded"
        except Exception as err:  # noqa: BLE001 - the person sees the reason in plain words
            status, outcome = "failed", str(err)
            log.warning("console %s of %s by %s failed: %s", run["kind"], run["target"], run["user"], err)
        # A restore's report (a preview's above all) is kept whole for its page; the API shows its text.
        run["report"] = outcome if hasattr(outcome, "summary") else None
        run["result"] = outcome.summary() if run["report"] else outcome
        run["finished_at"] = to_iso(time.time())
        # The status last: a page that sees the job ended must find its report (a preview's page without
        # it stops refreshing and never shows the confirmation).
        run["status"] = status
        self.audit.record(run["user"], run["kind"], "ok" if status == "succeeded" else "failed",
                          run["target"], str(run["result"]))

    def get(self, job_id: str) -> dict | None:
        """The job as it is now, a copy: its thread goes on writing it, and a page rendered from the live
        run could read it running in one place and ended in another (and stop refreshing)."""
        run = self._runs.get(job_id)
        return dict(run) if run else None

    def public(self, job_id: str) -> dict | None:
        """A job as the API shows it: plain values only."""
        run = self.get(job_id)
        return {k: v for k, v in run.items() if k not in ("report", "asked")} if run else None


def overview(jobs: Jobs) -> dict:
    """What the console's front page shows: the marked lines of `opsmon-backup status` (the console is the
    service, so it is not asked about itself), per tier, per copy, drills, integrity, the PITR window,
    and every backup with its size and age for a person (exact bytes and times in the API)."""
    found = report.build(jobs)
    facts = found.facts
    current = jobs.store.own_catalog()
    status = current.status
    now = found.checked_at
    tiers = []
    for tier in TIERS:
        newest = current.newest_verified(tier)
        tiers.append({"tier": tier, "count": len(current.of_tier(tier)), "newest": newest.id if newest else None,
                      "retention": facts["tiers"][tier]["retention"], "level": facts["tiers"][tier]["level"],
                      "size": size_text(newest.size_bytes) if newest else None,
                      "age": ago_text(newest.finished_at if newest else None, now)})
    copies = {name: {"last_success": ago_text(c.last_success_at, now),
                     "at": to_iso(c.last_success_at) if c.last_success_at else None, "error": c.last_error,
                     "level": facts["copies"].get(name, {}).get("level", report.OK)}
              for name, c in status.copies.items()}
    present = {location.name: _location_keys(location) for location in jobs.locations}
    backups = []
    for record in reversed(current.backups):
        item = record.as_json()
        item["age"] = ago_text(record.started_at, now)
        item["size"] = size_text(record.size_bytes)
        item["taken"] = moment_text(record.started_at)
        item["locations"] = ["local"] + [name for name, keys in present.items()
                                         if f"{record.tier}/{record.path.name}" in keys]
        backups.append(item)
    drills = [{"location": name, "level": d["level"],
               "passed": ago_text(_timestamp(d["last_success_at"]), now),
               "source": d["source"], "error": d["last_error"] if d["level"] == report.PROBLEM else None}
              for name, d in facts["drills"].items()]
    pitr = status.pitr
    return {"status": {"ok": found.ok, "level": found.level,
                       "lines": [line.as_json() for line in found.lines if line.level in (report.WARNING,
                                                                                          report.PROBLEM)]},
            "tiers": tiers, "backups": backups, "copies": copies, "drills": drills,
            "integrity": status.integrity, "problems": current.problems + status.problems(),
            "pitr": {"earliest": to_iso(pitr.earliest_at) if pitr and pitr.earliest_at else None,
                     "latest": to_iso(pitr.last_replicated_at) if pitr else None},
            "tables": live_tables(jobs.store.database)}


def _timestamp(iso: str | None) -> float | None:
    return to_timestamp(iso) if iso else None


def _location_keys(location: Location) -> set[str]:
    try:
        return location.keys()
    except Exception:  # noqa: BLE001 - a location that cannot be listed shows no copies
        return set()


def live_tables(database: Path) -> list[str]:
    try:
        with closing(sqlitefile.open_readonly(database)) as connection:
            return sqlitefile.tables(connection)
    except Exception:  # noqa: BLE001 - no database yet: nothing to choose from
        return []
