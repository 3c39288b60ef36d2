"""The backup console and its JSON API, served by `opsmon-backup serve`: see the backups, back up, verify,
delete and restore, behind a login, with every action audited."""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import time
from collections import Counter, deque
from contextlib import closing
from datetime import timedelta
from pathlib import Path

from flask import Flask, abort, g, has_request_context, jsonify, redirect, render_template, request, session, url_for

from backup_jobs import sqlitefile
from opsmon import catalog
from opsmon.catalog import TIERS, to_iso
from backup_jobs.cli import UsageError, backup_json, parse_moment
from backup_jobs.jobs import age_text
from backup_jobs.locks import LockHeld
from backup_jobs.restore import BadRequest, RestoreFailed
from backup_jobs.store import UnknownBackup

log = logging.getLogger(__name__)

ID_PATTERN = re.compile(r"\d{8}T\d{6}Z-(daily|weekly|monthly|safety)(-\d+)?")
TABLE_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
LOCK_WAIT_SECONDS = 120
LOGIN_FAILURES_ALLOWED = 5
LOGIN_WINDOW_SECONDS = 300


class Audit:
    """Every action, as JSON lines in the backup directory, and counted for /metrics."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.counts: Counter = Counter()
        self._lock = threading.Lock()

    def record(self, user: str | None, action: str, result: str, target: str = "", detail: str = "") -> None:
        entry = {"time": to_iso(time.time()), "user": user, "action": action, "target": target,
                 "result": result, "detail": detail[:500],
                 "remote": request.remote_addr if has_request_context() else None}
        with self._lock:
            self.counts[(action, result)] += 1
            with open(self.path, "a") as out:
                out.write(json.dumps(entry) + "\n")

    def entries(self, limit: int = 200) -> list[dict]:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in reversed(lines[-limit:])]


class LoginLimiter:
    """At most LOGIN_FAILURES_ALLOWED failed logins per address in LOGIN_WINDOW_SECONDS."""

    def __init__(self, clock=time.monotonic):
        self._failures: dict[str, deque] = {}
        self._clock = clock

    def blocked(self, address: str) -> bool:
        recent = self._failures.setdefault(address, deque())
        while recent and recent[0] < self._clock() - LOGIN_WINDOW_SECONDS:
            recent.popleft()
        return len(recent) >= LOGIN_FAILURES_ALLOWED

    def failed(self, address: str) -> None:
        self._failures.setdefault(address, deque()).append(self._clock())


class Busy(Exception):
    def __init__(self, job_id: str):
        super().__init__(job_id)
        self.job_id = job_id


class JobRunner:
    """Long actions in the background, one at a time through the job lock; one restore at a time."""

    def __init__(self, jobs, audit: Audit):
        self.jobs = jobs
        self.audit = audit
        self._runs: dict[str, dict] = {}
        self._lock = threading.Lock()

    def start(self, kind: str, user: str, target: str, action) -> str:
        with self._lock:
            if kind == "restore":
                running = [i for i, r in self._runs.items() if r["kind"] == "restore" and r["status"] == "running"]
                if running:
                    raise Busy(running[0])
            job_id = secrets.token_hex(8)
            self._runs[job_id] = {"id": job_id, "kind": kind, "target": target, "user": user, "status": "running",
                                  "started_at": to_iso(time.time()), "finished_at": None, "result": None}
        threading.Thread(target=self._run, args=(job_id, action), daemon=True).start()
        return job_id

    def _run(self, job_id: str, action) -> None:
        run = self._runs[job_id]
        try:
            with self.jobs.locked(f"console {run['kind']} {run['target']} by {run['user']}",
                                  wait_seconds=LOCK_WAIT_SECONDS):
                result = action()
            run["status"], run["result"] = "succeeded", result
        except Exception as err:  # noqa: BLE001 - the person sees the reason in plain words
            run["status"], run["result"] = "failed", str(err)
            log.warning("console %s of %s by %s failed: %s", run["kind"], run["target"], run["user"], err)
        run["finished_at"] = to_iso(time.time())
        self.audit.record(run["user"], run["kind"], "ok" if run["status"] == "succeeded" else "failed",
                          run["target"], str(run["result"]))

    def get(self, job_id: str) -> dict | None:
        return self._runs.get(job_id)


def _secret_key(directory: Path) -> bytes:
    """The key that signs session cookies, made once and kept beside the backups (mode 600)."""
    path = Path(directory) / ".console-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(secrets.token_bytes(32))
        path.chmod(0o600)
    return path.read_bytes()


def overview(jobs) -> dict:
    """What the console's front page shows: per tier, per copy, drills, integrity, the PITR window."""
    records = jobs.store.records()
    status = catalog.read_status(jobs.directory)
    now = time.time()
    tiers = []
    for tier in TIERS:
        verified = [r for r in records if r.tier == tier and r.verified]
        newest = verified[-1] if verified else None
        tiers.append({"tier": tier, "count": len([r for r in records if r.tier == tier]),
                      "newest": newest.id if newest else None,
                      "age": age_text(now - newest.finished_at) if newest else "never"})
    copies = {name: {"last_success": to_iso(v["last_success_at"]) if v.get("last_success_at") else "never",
                     "error": v.get("last_error")} for name, v in status.get("copies", {}).items()}
    present = {location.name: _location_keys(location) for location in jobs.locations}
    backups = []
    for record in reversed(records):
        item = backup_json(record)
        item["age"] = age_text(now - record.finished_at)
        item["locations"] = ["local"] + [name for name, keys in present.items()
                                         if f"{record.tier}/{record.path.name}" in keys]
        backups.append(item)
    pitr = status.get("pitr", {})
    return {"tiers": tiers, "backups": backups, "copies": copies, "drill": status.get("drill", {}),
            "integrity": status.get("integrity", {}),
            "pitr": {"earliest": to_iso(pitr["earliest_at"]) if pitr.get("earliest_at") else None,
                     "latest": to_iso(pitr["last_replicated_at"]) if pitr.get("last_replicated_at") else None},
            "tables": _tables(jobs.store.database)}


def _location_keys(location) -> set[str]:
    try:
        return location.keys()
    except Exception:  # noqa: BLE001 - a location that cannot be listed shows no copies
        return set()


def _tables(database: Path) -> list[str]:
    try:
        with closing(sqlitefile.open_readonly(database)) as connection:
            return sqlitefile.tables(connection)
    except Exception:  # noqa: BLE001 - no database yet: nothing to choose from
        return []


def create_app(jobs, users, secure_cookies: bool = False) -> Flask:
    console = jobs.config.backups.console
    app = Flask(__name__)
    app.config.update(SECRET_KEY=_secret_key(jobs.directory), SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_SECURE=secure_cookies,
                      SESSION_COOKIE_NAME="opsmon_console",
                      PERMANENT_SESSION_LIFETIME=timedelta(seconds=console.session_seconds))
    audit = Audit(jobs.directory / "audit.jsonl")
    runner = JobRunner(jobs, audit)
    limiter = LoginLimiter()
    app.extensions["opsmon"] = {"audit": audit, "runner": runner}

    def wants_json() -> bool:
        return request.path.startswith("/api/")

    def fail(status: int, message: str, **extra):
        if wants_json():
            return jsonify({"error": message, **extra}), status
        return render_template("message.html", title="Not done", message=message), status

    @app.before_request
    def guard():
        g.user, g.role = session.get("user"), session.get("role")
        if request.endpoint in ("login", "static"):
            return None
        if g.user is None:
            return fail(401, "log in first") if wants_json() else redirect(url_for("login"))
        if request.method in CHANGING:
            token = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token")
            if not token or not secrets.compare_digest(token, session.get("csrf", "")):
                return fail(403, "missing or wrong CSRF token (reload the page)")
            if g.role != "admin":
                audit.record(g.user, request.endpoint or request.path, "refused", detail="viewer")
                return fail(403, "only an admin may change anything")
        return None

    @app.context_processor
    def template_values():
        return {"user": session.get("user"), "role": session.get("role"), "csrf": session.get("csrf", "")}

    # ---- login ---------------------------------------------------------------------------

    @app.route("/login", methods=["GET", "POST"])
    def login():
        if request.method == "GET":
            session.setdefault("csrf", secrets.token_urlsafe(24))
            return render_template("login.html", error=None)
        address = request.remote_addr or "?"
        if limiter.blocked(address):
            audit.record(request.form.get("username"), "login", "refused", detail="too many attempts")
            return render_template("login.html", error="Too many failed attempts; wait five minutes."), 429
        if not secrets.compare_digest(request.form.get("csrf_token", ""), session.get("csrf", "-")):
            return render_template("login.html", error="The form expired; try again."), 403
        name = request.form.get("username", "")
        role = users.authenticate(name, request.form.get("password", ""))
        if role is None:
            limiter.failed(address)
            audit.record(name, "login", "failed")
            return render_template("login.html", error="Wrong user name or password."), 401
        session.clear()
        session.permanent = True
        session.update(user=name, role=role, csrf=secrets.token_urlsafe(24))
        audit.record(name, "login", "ok")
        return redirect(url_for("index"))

    @app.post("/logout")
    def logout():
        audit.record(g.user, "logout", "ok")
        session.clear()
        return redirect(url_for("login"))

    # ---- pages ---------------------------------------------------------------------------

    @app.get("/")
    def index():
        return render_template("index.html", data=overview(jobs), tiers=TIERS)

    @app.get("/history")
    def history():
        return render_template("history.html", entries=audit.entries())

    @app.get("/restore")
    def confirm_restore():
        source, tables = restore_request(request.args)
        try:
            with jobs.locked(f"console dry run by {g.user}", wait_seconds=10):
                report = run_restore(source, tables, dry_run=True)
        except RestoreFailed as err:
            return fail(400, str(err))
        return render_template("confirm.html", report=report, source=source, tables=tables,
                               undone=sum(abs(d) for d in report.changes().values()))

    @app.post("/restore")
    def start_restore_page():
        source, tables = restore_request(request.form)
        job_id = runner.start("restore", g.user, describe(source, tables),
                              lambda: run_restore(source, tables, False).summary())
        return redirect(url_for("job_page", job_id=job_id))

    @app.get("/jobs/<job_id>")
    def job_page(job_id):
        run = runner.get(job_id)
        if run is None:
            abort(404)
        return render_template("job.html", run=run)

    @app.post("/backups")
    def create_page():
        tier = request.form.get("tier", "")
        if tier not in TIERS:
            return fail(400, f"tier must be one of {', '.join(TIERS)}")
        job_id = runner.start("backup", g.user, tier, lambda: f"backup {jobs.backup(tier).id} made and verified")
        return redirect(url_for("job_page", job_id=job_id))

    @app.post("/backups/verify")
    def verify_all_page():
        job_id = runner.start("verify", g.user, "all", lambda: verify_text(None))
        return redirect(url_for("job_page", job_id=job_id))

    @app.post("/backups/<path:backup_id>/verify")
    def verify_page(backup_id):
        record = find(backup_id)
        job_id = runner.start("verify", g.user, record.id, lambda: verify_text([record.id]))
        return redirect(url_for("job_page", job_id=job_id))

    @app.post("/backups/<path:backup_id>/delete")
    def delete_page(backup_id):
        status, body = delete(backup_id)
        if status != 200:
            return fail(status, body["error"])
        return redirect(url_for("index"))

    # ---- the JSON API --------------------------------------------------------------------

    @app.get("/api/backups")
    def api_list():
        return jsonify(overview(jobs)["backups"])

    @app.post("/api/backups")
    def api_create():
        tier = (request.get_json(silent=True) or {}).get("tier")
        if tier not in TIERS:
            return fail(400, f"tier must be one of {', '.join(TIERS)}")
        job_id = runner.start("backup", g.user, tier, lambda: f"backup {jobs.backup(tier).id} made and verified")
        return jsonify({"job": job_id}), 202

    @app.get("/api/backups/<path:backup_id>")
    def api_show(backup_id):
        record = find(backup_id)
        return jsonify({**backup_json(record), "manifest": jobs.store.manifest(record)})

    @app.delete("/api/backups/<path:backup_id>")
    def api_delete(backup_id):
        status, body = delete(backup_id)
        return jsonify(body), status

    @app.post("/api/backups/<path:backup_id>/verify")
    def api_verify(backup_id):
        record = find(backup_id)
        return jsonify({"job": runner.start("verify", g.user, record.id, lambda: verify_text([record.id]))}), 202

    @app.post("/api/restore")
    def api_restore():
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return fail(400, "send a JSON object: {\"backup\": id} or {\"at\": moment}")
        source, tables = restore_request(body)
        dry_run = body.get("dry_run", False) is True
        job_id = runner.start("restore", g.user, describe(source, tables),
                              lambda: run_restore(source, tables, dry_run).summary())
        return jsonify({"job": job_id}), 202

    @app.get("/api/jobs/<job_id>")
    def api_job(job_id):
        run = runner.get(job_id)
        return (jsonify(run), 200) if run else fail(404, f"no job {job_id}")

    @app.errorhandler(404)
    def not_found(_):
        return fail(404, "not found")

    @app.errorhandler(UnknownBackup)
    def unknown_backup(err):
        return fail(404, str(err))

    @app.errorhandler(BadRequest)
    @app.errorhandler(UsageError)
    def bad_request(err):
        return fail(400, str(err))

    @app.errorhandler(Busy)
    def busy(err):
        return fail(409, f"a restore is running already (job {err.job_id})", job=err.job_id)

    @app.errorhandler(LockHeld)
    def lock_held(err):
        return fail(409, str(err))

    # ---- shared --------------------------------------------------------------------------

    def find(backup_id: str):
        """A backup by id: the id's shape is checked first, and only the catalog says what it names."""
        if not ID_PATTERN.fullmatch(backup_id):
            raise BadRequest(f"{backup_id!r} is not a backup id")
        return jobs.store.find(backup_id)

    def restore_request(values) -> tuple[tuple[str, object], list[str] | None]:
        tables = values.get("tables") or None
        if isinstance(tables, str):
            tables = [t.strip() for t in tables.split(",") if t.strip()] or None
        if tables is not None:
            known = _tables(jobs.store.database)
            bad = [t for t in tables if not isinstance(t, str) or not TABLE_PATTERN.fullmatch(t) or t not in known]
            if bad:
                raise BadRequest(f"no table {', '.join(map(str, bad))} in the database")
        if values.get("backup"):
            backup_id = values["backup"]
            if not isinstance(backup_id, str) or not ID_PATTERN.fullmatch(backup_id):
                raise BadRequest(f"{backup_id!r} is not a backup id")
            return ("backup", jobs.store.find(backup_id).id), tables
        if values.get("at"):
            if not isinstance(values["at"], str):
                raise BadRequest("at must be an ISO 8601 moment")
            return ("at", parse_moment(values["at"], "at")), tables
        raise BadRequest("say what to restore: a backup id, or a moment")

    def run_restore(source, tables, dry_run: bool):
        kind, value = source
        if kind == "backup":
            return jobs.restore_backup(value, tables, dry_run)
        return jobs.restore_moment(value, tables, dry_run)

    def describe(source, tables) -> str:
        kind, value = source
        what = value if kind == "backup" else f"the database at {to_iso(value)}"
        return f"{what}" + (f" (tables {', '.join(tables)})" if tables else "")

    def verify_text(ids) -> str:
        problems = jobs.verify(ids)
        if problems:
            raise RuntimeError("; ".join(problems))
        return "every backup verified" if ids is None else f"backup {ids[0]} verified"

    def delete(backup_id: str) -> tuple[int, dict]:
        record = find(backup_id)
        try:
            with jobs.locked(f"console delete {record.id} by {g.user}", wait_seconds=10):
                verified = [r for r in jobs.store.records() if r.tier == record.tier and r.verified]
                if record.verified and len(verified) == 1:
                    audit.record(g.user, "delete", "refused", record.id, "the last verified backup of its tier")
                    return 409, {"error": f"{record.id} is the last verified {record.tier} backup: it stays"}
                jobs.store.delete(record)
        except LockHeld as err:
            return 409, {"error": str(err)}
        audit.record(g.user, "delete", "ok", record.id)
        return 200, {"deleted": record.id}

    return app
