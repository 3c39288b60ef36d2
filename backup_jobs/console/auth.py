"""Logging in and out, and the guard in front of every other page: a live session, a CSRF token, a role.

Sessions are kept on the server too: logging out ends the session for good (a copied cookie no
longer works), and the role is read from the users file at each request, so a demoted admin
loses the admin's rights at once, and a new password ends every session opened with the old one.
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
    """At most LOGIN_FAILURES_ALLOWED failed logins per address in LOGIN_WINDOW_SECONDS.

    An attempt is counted before its password is checked (the slow part), and given back when it
    succeeds: however many come at once, no more than the limit are ever checked."""

    def __init__(self, clock=time.monotonic):
        self._attempts: dict[str, deque] = {}
        self._clock = clock
        self._lock = threading.Lock()

    def attempt(self, address: str) -> float | None:
        """Count an attempt; its mark to give back on success, or None when the address must wait."""
        with self._lock:
            now = self._clock()
            recent = self._attempts.setdefault(address, deque())
            while recent and recent[0] < now - LOGIN_WINDOW_SECONDS:
                recent.popleft()
            if len(recent) >= LOGIN_FAILURES_ALLOWED:
                return None
            recent.append(now)
            return now

    def succeeded(self, address: str, mark: float) -> None:
        with self._lock:
            recent = self._attempts.get(address)
            if recent and mark in recent:
                recent.remove(mark)


class Sessions:
    """The sessions that are live now, by a random id kept in the signed cookie, each with the password
    stamp of its user at login."""

    def __init__(self):
        self._live: dict[str, str] = {}
        self._lock = threading.Lock()

    def open(self, password_stamp: str) -> str:
        sid = secrets.token_urlsafe(24)
        with self._lock:
            self._live[sid] = password_stamp
        return sid

    def password_stamp(self, sid: str | None) -> str | None:
        """The stamp the session was opened with; None when it is not live."""
        with self._lock:
            return self._live.get(sid) if sid else None

    def close(self, sid: str | None) -> None:
        with self._lock:
            self._live.pop(sid, None)


def _shared():
    return current_app.extensions["opsmon"]


@auth.before_app_request
def guard():
    shared = _shared()
    g.user = g.role = None
    stamp = shared["sessions"].password_stamp(session.get("sid"))
    if stamp is not None:
        account = shared["users"].account(session.get("user"))
        if account is not None and account.password_stamp == stamp:
            g.user, g.role = session.get("user"), account.role
    if request.endpoint in ("auth.login", "static"):
        return None
    if g.role is None:  # no session, an ended one, a user who no longer exists or has a new password
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
    if not secrets.compare_digest(request.form.get("csrf_token", ""), session.get("csrf", "-")):
        return render_template("login.html", error="The form expired; try again."), 403
    name = request.form.get("username", "")
    mark = shared["limiter"].attempt(address)
    if mark is None:
        shared["audit"].record(name, "login", "refused", detail="too many attempts")
        return render_template("login.html", error="Too many failed attempts; wait five minutes."), 429
    account = shared["users"].authenticate(name, request.form.get("password", ""))
    if account is None:
        shared["audit"].record(name, "login", "failed")
        return render_template("login.html", error="Wrong user name or password."), 401
    shared["limiter"].succeeded(address, mark)
    shared["sessions"].close(session.get("sid"))
    session.clear()
    session.permanent = True
    session.update(user=name, sid=shared["sessions"].open(account.password_stamp), csrf=secrets.token_urlsafe(24))
    shared["audit"].record(name, "login", "ok")
    return redirect(url_for("pages.index"))


@auth.post("/logout")
def logout():
    shared = _shared()
    shared["audit"].record(g.user, "logout", "ok")
    shared["sessions"].close(session.get("sid"))
    session.clear()
    return redirect(url_for("auth.login"))
