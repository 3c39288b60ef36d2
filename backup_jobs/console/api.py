"""The console's JSON API (docs/console.md): backups, verify, delete, restores and jobs, behind the same login."""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request

from backup_jobs.console.pages import delete_backup
from backup_jobs.console.respond import fail
from backup_jobs.console.work import live_tables, overview
from backup_jobs.inputs import UsageError, parse_backup_id, parse_tier, restore_request

api = Blueprint("api", __name__, url_prefix="/api")


def _shared():
    return current_app.extensions["opsmon"]


def _started(job_id: str):
    return jsonify({"job": job_id}), 202


@api.get("/backups")
def list_backups():
    return jsonify(overview(_shared()["jobs"])["backups"])


@api.post("/backups")
def create():
    tier = parse_tier((request.get_json(silent=True) or {}).get("tier"))
    return _started(_shared()["runner"].backup(g.user, tier))


@api.get("/backups/<path:backup_id>")
def show(backup_id):
    record = _shared()["jobs"].store.find(parse_backup_id(backup_id))
    return jsonify({**record.as_json(), "manifest": record.manifest.model_dump(mode="json")})


@api.delete("/backups/<path:backup_id>")
def delete(backup_id):
    return jsonify({"deleted": delete_backup(backup_id)})


@api.post("/backups/<path:backup_id>/verify")
def verify(backup_id):
    record = _shared()["jobs"].store.find(parse_backup_id(backup_id))
    return _started(_shared()["runner"].verify(g.user, [record.id]))


@api.post("/restore")
def restore():
    jobs = _shared()["jobs"]
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise UsageError('send a JSON object: {"backup": id} or {"at": moment}')
    wanted = restore_request(body, live_tables(jobs.store.database), body.get("dry_run", False))
    jobs.refuse_missing_database(wanted)  # at once, with the reason, rather than as a failed job
    return _started(_shared()["runner"].restore(g.user, wanted))


@api.get("/jobs/<job_id>")
def job(job_id):
    run = _shared()["runner"].public(job_id)
    return (jsonify(run), 200) if run else fail(404, f"no job {job_id}")
