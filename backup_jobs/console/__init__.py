"""The backup console and its JSON API, served by `opsmon-backup serve`: see the backups, back up, verify,
delete and restore, behind a login, with every action audited. Three blueprints: auth, pages, api."""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from pathlib import Path

from flask import Flask, g

from backup_jobs.console.api import api
from backup_jobs.console.auth import LoginLimiter, Sessions, auth
from backup_jobs.console.pages import pages
from backup_jobs.console.respond import fail
from backup_jobs.console.work import Audit, Busy, JobRunner
from backup_jobs.inputs import UsageError
from backup_jobs.jobs import Jobs, Refused
from backup_jobs.locks import LockHeld
from backup_jobs.restore import BadRequest
from backup_jobs.store import UnknownBackup
from backup_jobs.users import Users, UsersFileInvalid
from opsmon import files

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
# The largest request body taken, form or JSON: the console's are a few hundred bytes, and a larger one is
# answered 413 from its Content-Length, never read.
MAX_BODY_BYTES = 64 * 1024


def _secret_key(directory: Path) -> bytes:
    """The key that signs session cookies, made once and kept beside the backups (mode 600)."""
    path = Path(directory) / ".console-secret"
    if not path.exists():
        files.write_atomically(path, secrets.token_bytes(32), mode=0o600)
    return path.read_bytes()


def create_app(jobs: Jobs, users: Users, secure_cookies: bool = False) -> Flask:
    console = jobs.config.backups.console
    app = Flask(__name__, template_folder=str(TEMPLATES))
    app.config.update(SECRET_KEY=_secret_key(jobs.directory), SESSION_COOKIE_HTTPONLY=True,
                      SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_SECURE=secure_cookies,
                      SESSION_COOKIE_NAME="opsmon_console",
                      PERMANENT_SESSION_LIFETIME=timedelta(seconds=console.session_seconds),
                      MAX_CONTENT_LENGTH=MAX_BODY_BYTES)
    audit = Audit(jobs.directory / "audit.jsonl")
    app.extensions["opsmon"] = {"jobs": jobs, "users": users, "audit": audit, "runner": JobRunner(jobs, audit),
                                "limiter": LoginLimiter(), "sessions": Sessions()}
    for blueprint in (auth, pages, api):
        app.register_blueprint(blueprint)
    _register_errors(app, audit)
    return app


def _register_errors(app: Flask, audit: Audit) -> None:
    @app.errorhandler(404)
    def not_found(_):
        return fail(404, "not found")

    @app.errorhandler(413)
    def too_large(_):
        return fail(413, f"the request is too large (at most {MAX_BODY_BYTES // 1024} KiB)")

    @app.errorhandler(UsersFileInvalid)
    def users_file_invalid(err):
        log.error("%s", err)  # the file's path and problem for the operator, not for whoever asked
        return fail(503, "the console's users file cannot be read; the service's log says why")

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

    @app.errorhandler(Refused)
    def refused(err):
        audit.record(g.user, "delete", "refused", detail=str(err))
        return fail(409, str(err))
