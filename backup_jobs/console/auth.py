"""Logging in and out, and the guard in front of every other page: a live session, a CSRF token, a role.

Sessions are kept on the server too: logging out ends the session for good (a copied cookie no
longer works), and the role is read from the users file at each request, so a demoted admin
loses the admin's rights at once.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque

from flask import Blueprint, current_app, g, redirect, render_template, request, session, url_for

from backup_jobs.console.respond import fail, wants_json

LOGIN_FAILURES_ALLOWED = 5
LOGIN_WINDOW_SECONDS = 300
CHANGING = {"POST", "PUT", "PATCH", "DELETE"}

auth = Blueprint("auth", __name__)


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


class Sessions:
    """The sessions that are live now, by a random id kept in the signed cookie."""

    def __init__(self):
        self._live: set[str] = set()
        self._lock = threading.Lock()

    def open(self) -> str:
        sid = secrets.token_urlsafe(24)
        with self._lock:
            self._live.add(sid)
        return sid

    def live(self, sid: str | None) -> bool:
        with self._lock:
            return sid in self._live

    def close(self, sid: str | None) -> None:
        with self._lock:
            self._live.discard(sid)


def _shared():
    return current_app.extensions["opsmon"]


@auth.before_app_request
def guard():
    shared = _shared()
    g.user = g.role = None
    if shared["sessions"].live(session.get("sid")):
        g.user = session.get("user")
        g.role = shared["users"].role(g.user)
    if request.endpoint in ("auth.login", "static"):
        return None
    if g.role is None:  # no session, an ended one, or a user who no longer exists
        return fail(401, "log in first") if wants_json() else redirect(url_for("auth.login"))
    if request.method in CHANGING:
        token = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token")
        if not token or not secrets.compare_digest(token, session.get("csrf", "")):
            return fail(403, "missing or wrong CSRF token (reload the page)")
        if g.role != "admin":
            shared["audit"].record(g.user, request.endpoint or request.path, "refused", detail="viewer")
            return fail(403, "only an admin may change anything")
    return None


@auth.app_context_processor
def template_values():
    return {"user": g.get("user"), "role": g.get("role"), "csrf": session.get("csrf", "")}


@auth.route("/login", methods=["GET", "POST"])
def login():
    shared = _shared()
    if request.method == "GET":
        session.setdefault("csrf", secrets.token_urlsafe(24))
        return render_template("login.html", error=None)
    address = request.remote_addr or "?"
    if shared["limiter"].blocked(address):
        shared["audit"].record(request.form.get("username"), "login", "refused", detail="too many attempts")
        return render_template("login.html", error="Too many failed attempts; wait five minutes."), 429
    if not secrets.compare_digest(request.form.get("csrf_token", ""), session.get("csrf", "-")):
        return render_template("login.html", error="The form expired; try again."), 403
    name = request.form.get("username", "")
    role = shared["users"].authenticate(name, request.form.get("password", ""))
    if role is None:
        shared["limiter"].failed(address)
        shared["audit"].record(name, "login", "failed")
        return render_template("login.html", error="Wrong user name or password."), 401
    shared["sessions"].close(session.get("sid"))
    session.clear()
    session.permanent = True
    session.update(user=name, sid=shared["sessions"].open(), csrf=secrets.token_urlsafe(24))
    shared["audit"].record(name, "login", "ok")
    return redirect(url_for("pages.index"))


@auth.post("/logout")
def logout():
    shared = _shared()
    shared["audit"].record(g.user, "logout", "ok")
    shared["sessions"].close(session.get("sid"))
    session.clear()
    return redirect(url_for("auth.login"))
