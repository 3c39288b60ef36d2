"""The console's pages: the backups, the history, a job's progress, and the restore with its preview.

A restore is previewed as a background job (a dry run under the job lock, never inside a GET);
its page then shows what the restore would undo, with the button that really restores.
"""

from __future__ import annotations

import time

from flask import Blueprint, abort, current_app, g, redirect, render_template, request, url_for

from backup_jobs.console.work import live_tables, overview
from backup_jobs.inputs import parse_backup_id, parse_tier, restore_request
from opsmon.catalog import TIERS, to_iso

pages = Blueprint("pages", __name__)


def _shared():
    return current_app.extensions["opsmon"]


def _to_job(job_id: str):
    return redirect(url_for("pages.job_page", job_id=job_id))


@pages.get("/")
def index():
    jobs = _shared()["jobs"]
    # The moment field's example is now: a person edits it back a little, never types a date from nothing.
    return render_template("index.html", data=overview(jobs), tiers=TIERS, database=jobs.store.database,
                           now=to_iso(int(time.time())))


@pages.get("/history")
def history():
    return render_template("history.html", entries=_shared()["audit"].entries())


@pages.post("/restore/preview")
def preview_restore():
    jobs = _shared()["jobs"]
    wanted = restore_request(request.form, live_tables(jobs.store.database), dry_run=True)
    return _to_job(_shared()["runner"].restore(g.user, wanted))


@pages.post("/restore")
def start_restore():
    jobs = _shared()["jobs"]
    wanted = restore_request(request.form, live_tables(jobs.store.database))
    return _to_job(_shared()["runner"].restore(g.user, wanted))


@pages.get("/jobs/<job_id>")
def job_page(job_id):
    run = _shared()["runner"].get(job_id)
    if run is None:
        abort(404)
    report = run.get("report")
    if run["kind"] == "preview" and report is not None:
        return render_template("confirm.html", report=report, asked=run["asked"],
                               undone=sum(abs(d) for d in report.changes().values()))
    return render_template("job.html", run=run)


@pages.post("/backups")
def create_backup():
    return _to_job(_shared()["runner"].backup(g.user, parse_tier(request.form.get("tier"))))


@pages.post("/backups/verify")
def verify_all():
    return _to_job(_shared()["runner"].verify(g.user, None))


@pages.post("/backups/<path:backup_id>/verify")
def verify_one(backup_id):
    record = _shared()["jobs"].store.find(parse_backup_id(backup_id))
    return _to_job(_shared()["runner"].verify(g.user, [record.id]))


@pages.post("/backups/<path:backup_id>/delete")
def delete(backup_id):
    delete_backup(backup_id)
    return redirect(url_for("pages.index"))


def delete_backup(backup_id: str) -> str:
    """Delete under the job lock; the rule that keeps the last verified backup of a tier is the jobs'."""
    shared = _shared()
    jobs = shared["jobs"]
    backup_id = parse_backup_id(backup_id)
    with jobs.locked(f"console delete {backup_id} by {g.user}", wait_seconds=10, via="console"):
        jobs.delete(backup_id)
    shared["audit"].record(g.user, "delete", "ok", backup_id)
    return backup_id
