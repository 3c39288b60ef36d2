"""The backup console and its API, on a real `opsmon-backup serve`: logins, roles, CSRF, ids, restores."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import sys
import threading
from urllib.parse import urlsplit

import pytest
import requests

from backup_jobs.console.work import Audit, JobRunner
from backup_jobs.locks import job_lock
from backup_jobs.users import Users
from tests.backup_helpers import demo_database, fingerprint, start_console
from tests.conftest import free_port, stop, wait_for

ADMIN, VIEWER = ("root", "a very long admin password"), ("watcher", "a very long viewer password")


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    work = tmp_path_factory.mktemp("console")
    db = demo_database(work / "live.db")
    users = Users(work / "users.json")
    users.add(*ADMIN, "admin")
    users.add(*VIEWER, "viewer")
    url, process = start_console(work, db, work / "users.json")
    yield {"url": url, "work": work, "db": db}
    stop(process)


def login(url: str, user: tuple[str, str]) -> tuple[requests.Session, str]:
    session = requests.Session()
    form = session.get(f"{url}/login", timeout=5).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    answer = session.post(f"{url}/login", data={"username": user[0], "password": user[1], "csrf_token": token},
                          timeout=5)
    assert answer.status_code == 200 and answer.url == f"{url}/", answer.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', session.get(f"{url}/", timeout=5).text).group(1)
    return session, csrf


def backups(session, url) -> list[dict]:
    return session.get(f"{url}/api/backups", timeout=5).json()


def finished(session, url, job: str) -> dict:
    return wait_for(lambda: (r := session.get(f"{url}/api/jobs/{job}", timeout=5).json())["status"] != "running"
                    and r, timeout=60, what=f"job {job}")


ENDPOINTS = [("GET", "/api/backups"), ("POST", "/api/backups"), ("GET", "/api/backups/20261126T020000Z-daily"),
             ("DELETE", "/api/backups/20261126T020000Z-daily"), ("POST", "/api/backups/20261126T020000Z-daily/verify"),
             ("POST", "/api/restore"), ("GET", "/api/jobs/abc")]


@pytest.mark.parametrize("method, path", ENDPOINTS, ids=[f"{m} {p}" for m, p in ENDPOINTS])
def test_every_api_endpoint_refuses_without_a_session(console, method, path):
    answer = requests.request(method, console["url"] + path, json={}, timeout=5)
    assert answer.status_code == 401 and answer.json() == {"error": "log in first"}


@pytest.mark.parametrize("path", ["/", "/history", "/restore?backup=x", "/jobs/abc"])
def test_pages_send_a_stranger_to_the_login(console, path):
    answer = requests.get(console["url"] + path, timeout=5, allow_redirects=False)
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/login")


def test_metrics_and_health_stay_open(console):
    assert requests.get(console["url"] + "/metrics", timeout=5).ok
    assert requests.get(console["url"] + "/-/healthy", timeout=5).text == "Healthy\n"


def test_a_viewer_sees_but_changes_nothing(console):
    url = console["url"]
    session, csrf = login(url, VIEWER)
    listed = backups(session, url)
    assert listed
    target = listed[-1]["id"]
    headers = {"X-CSRF-Token": csrf}
    for method, path, body in [("POST", "/api/backups", {"tier": "daily"}), ("DELETE", f"/api/backups/{target}", None),
                               ("POST", f"/api/backups/{target}/verify", None),
                               ("POST", "/api/restore", {"backup": target})]:
        answer = session.request(method, url + path, json=body, headers=headers, timeout=5)
        assert answer.status_code == 403 and "only an admin" in answer.json()["error"], path
    assert "Restore…" not in session.get(f"{url}/", timeout=5).text


def test_changes_need_the_csrf_token(console):
    session, csrf = login(console["url"], ADMIN)
    for headers in ({}, {"X-CSRF-Token": "forged"}):
        answer = session.post(console["url"] + "/api/backups", json={"tier": "daily"}, headers=headers, timeout=5)
        assert answer.status_code == 403 and "CSRF" in answer.json()["error"]


def test_ids_and_moments_are_checked(console):
    url = console["url"]
    session, csrf = login(url, ADMIN)
    headers = {"X-CSRF-Token": csrf}
    assert session.get(f"{url}/api/backups/20200101T000000Z-daily", timeout=5).status_code == 404
    assert session.get(f"{url}/api/jobs/nope", timeout=5).status_code == 404
    escape = session.get(f"{url}/api/backups/..%2F..%2Fetc%2Fpasswd", timeout=5)
    assert escape.status_code == 400 and "is not a backup id" in escape.json()["error"]
    for body, message in [({"backup": "../../etc/passwd"}, "is not a backup id"),
                          ({"at": "yesterday"}, "not an ISO 8601 moment"),
                          ({"at": "2026-11-26T10:00:00"}, "give the time zone too"),
                          ({"backup": backups(session, url)[0]["id"], "tables": ["videos; DROP TABLE x"]}, "no table"),
                          ({}, "say what to restore")]:
        answer = session.post(f"{url}/api/restore", json=body, headers=headers, timeout=5)
        assert answer.status_code == 400 and message in answer.json()["error"], body


def test_restore_verify_and_delete_through_the_api(console):
    url, db = console["url"], console["db"]
    session, csrf = login(url, ADMIN)
    headers = {"X-CSRF-Token": csrf}
    created = finished(session, url, session.post(f"{url}/api/backups", json={"tier": "daily"}, headers=headers,
                                                  timeout=5).json()["job"])
    assert created["status"] == "succeeded"
    backup_id = re.search(r"backup (\S+) made", created["result"]).group(1)
    before = fingerprint(db)
    with __import__("sqlite3").connect(db) as connection:
        connection.execute("DELETE FROM monetizations")
    job = session.post(f"{url}/api/restore", json={"backup": backup_id}, headers=headers, timeout=5).json()["job"]
    result = finished(session, url, job)
    assert result["status"] == "succeeded", result
    assert fingerprint(db) == before and "safety backup" in result["result"]

    verified = finished(session, url, session.post(f"{url}/api/backups/{backup_id}/verify", headers=headers,
                                                   timeout=5).json()["job"])
    assert verified["status"] == "succeeded"

    daily = [b for b in backups(session, url) if b["tier"] == "daily"]
    older = min(daily, key=lambda b: b["created_at"])["id"]
    assert session.delete(f"{url}/api/backups/{older}", headers=headers, timeout=5).json() == {"deleted": older}
    assert session.get(f"{url}/api/backups/{older}", timeout=5).status_code == 404
    last = [b for b in backups(session, url) if b["tier"] == "monthly"]
    assert len(last) == 1
    refused = session.delete(f"{url}/api/backups/{last[0]['id']}", headers=headers, timeout=5)
    assert refused.status_code == 409 and "last verified monthly backup" in refused.json()["error"]

    metrics = requests.get(f"{url}/metrics", timeout=5).text
    assert 'opsmon_admin_actions_total{action="restore",result="ok"} 1.0' in metrics
    assert 'opsmon_admin_actions_total{action="delete",result="refused"} 1.0' in metrics
    audit = (console["work"] / "backups" / "audit.jsonl").read_text()
    assert '"action": "restore"' in audit and '"user": "root"' in audit


def test_a_second_restore_gets_409_with_the_running_job(console):
    url = console["url"]
    session, csrf = login(url, ADMIN)
    headers = {"X-CSRF-Token": csrf}
    target = backups(session, url)[0]["id"]
    with job_lock(console["work"] / "backups", "a test holding the lock"):  # the first restore waits for it
        first = session.post(f"{url}/api/restore", json={"backup": target}, headers=headers, timeout=5).json()["job"]
        second = session.post(f"{url}/api/restore", json={"backup": target}, headers=headers, timeout=5)
        assert second.status_code == 409 and second.json()["job"] == first
    assert finished(session, url, first)["status"] == "succeeded"


def test_sessions_are_protected_and_logins_rate_limited(tmp_path):
    # A console of its own: the six failed logins would lock the shared one's address out.
    Users(tmp_path / "users.json").add(*ADMIN, "admin")
    url, process = start_console(tmp_path, demo_database(tmp_path / "live.db"), tmp_path / "users.json")
    try:
        rate_limited(url)
    finally:
        stop(process)


def rate_limited(url: str) -> None:
    session = requests.Session()
    form = session.get(f"{url}/login", timeout=5)
    cookie = form.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    codes = [session.post(f"{url}/login", data={"username": "root", "password": "wrong", "csrf_token": token},
                          timeout=5).status_code for _ in range(6)]
    assert codes == [401] * 5 + [429]


def test_under_tls_the_session_cookie_is_secure(tmp_path):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", str(tmp_path / "key.pem"),
                    "-out", str(tmp_path / "cert.pem")], check=True, capture_output=True)
    Users(tmp_path / "users.json").add(*ADMIN, "admin")
    url, process = start_console(tmp_path, demo_database(tmp_path / "live.db"), tmp_path / "users.json",
                                 tls=(tmp_path / "cert.pem", tmp_path / "key.pem"))
    try:
        answer = requests.get(f"{url}/login", verify=str(tmp_path / "cert.pem"), timeout=5)
        assert answer.ok and "Secure" in answer.headers["Set-Cookie"]
        with pytest.raises(requests.ConnectionError):
            requests.get(url.replace("https", "http") + "/login", timeout=5)
    finally:
        stop(process)


def test_a_logged_out_cookie_is_dead_and_a_demoted_admin_loses_the_rights_at_once(console):
    url = console["url"]
    session, csrf = login(url, ADMIN)
    copied = requests.Session()
    copied.cookies.update(session.cookies)  # the cookie, as someone who saw it would replay it
    assert copied.get(f"{url}/api/backups", timeout=5).status_code == 200
    session.post(f"{url}/logout", data={"csrf_token": csrf}, timeout=5)
    assert copied.get(f"{url}/api/backups", timeout=5).status_code == 401

    users = Users(console["work"] / "users.json")
    users.add("temp", "a temporary admin password", "admin")
    session, csrf = login(url, ("temp", "a temporary admin password"))
    users.add("temp", "a temporary admin password", "viewer")
    refused = session.post(f"{url}/api/backups", json={"tier": "daily"}, headers={"X-CSRF-Token": csrf}, timeout=5)
    assert refused.status_code == 403 and "only an admin" in refused.json()["error"]


def test_a_broken_line_in_the_audit_does_not_break_the_history(console):
    url = console["url"]
    session, _ = login(url, VIEWER)
    with open(console["work"] / "backups" / "audit.jsonl", "ab") as audit:
        audit.write(b'{"time": "2026-11-26T10:00:00Z", "user": "cut sh\n\xff\xfe[1, 2]\n')
    history = session.get(f"{url}/history", timeout=5)
    assert history.status_code == 200 and "unreadable" in history.text
    session.get(f"{url}/", timeout=5)  # and the line after it is read again as usual
    assert "login" in session.get(f"{url}/history", timeout=5).text


def test_a_restore_preview_runs_as_a_job_and_shows_what_it_would_undo(console):
    url, db = console["url"], console["db"]
    session, csrf = login(url, ADMIN)
    before = fingerprint(db)
    target = [b for b in backups(session, url) if b["tier"] == "daily"][0]["id"]
    page = session.post(f"{url}/restore/preview", data={"backup": target, "csrf_token": csrf}, timeout=5)
    assert "/jobs/" in page.url
    def confirmation():
        text = session.get(page.url, timeout=5).text
        return text if 'id="confirm"' in text else None

    confirm = wait_for(confirmation, timeout=60, what="the preview's confirmation")
    assert f"backup {target}" in confirm and "A safety backup" in confirm
    assert fingerprint(db) == before  # a preview changes nothing
    assert session.get(f"{url}/restore?backup={target}", timeout=5).status_code == 405  # no GET does work


def test_a_job_is_shown_ended_only_once_its_result_is_there(tmp_path):
    """A page renders a job while its thread writes it. Seen ended before its report was kept, or read live
    and ending halfway through the page, a preview rendered the plain job page, which stops refreshing,
    and never showed the confirmation."""
    seen = []

    class Report:
        def summary(self):
            (job,) = runner._runs  # the run as a page asking now would get it
            seen.append(runner.get(job))
            return "would restore"

    class Jobs:
        locked = staticmethod(lambda *args, **kwargs: contextlib.nullcontext())

    runner = JobRunner(Jobs(), Audit(tmp_path / "audit.jsonl"))
    job_id = runner._start("preview", "admin", "a backup", Report)
    run = wait_for(lambda: runner.get(job_id) if runner.get(job_id)["status"] != "running" else None,
                   what="the job to end")
    assert [page["status"] for page in seen] == ["running"]  # and still so once the job ended: a copy
    assert (run["status"], run["result"]) == ("succeeded", "would restore") and run["report"] is not None


def announce_body(url: str, path: str, length: int, headers: str = "") -> tuple[int, str]:
    """POST whose head announces a body of `length` bytes and sends none of it: a server that reads the body
    before answering waits for it (and this times out); the answer as (status, body)."""
    host, port = urlsplit(url).hostname, urlsplit(url).port
    with socket.create_connection((host, port), timeout=10) as connection:
        connection.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {length}\r\n"
                           f"{headers}\r\n".encode())
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def login_form(url: str) -> tuple[requests.Session, str]:
    session = requests.Session()
    return session, re.search(r'name="csrf_token" value="([^"]+)"', session.get(f"{url}/login", timeout=5).text)[1]


def test_a_flood_of_huge_user_names_leaves_the_audit_small(tmp_path):
    # A console of its own: the failed logins would lock the shared one's address out.
    Users(tmp_path / "users.json").add(*ADMIN, "admin")
    url, process = start_console(tmp_path, demo_database(tmp_path / "live.db"), tmp_path / "users.json")
    audit = tmp_path / "backups" / "audit.jsonl"
    try:
        session, token = login_form(url)
        cookie = f"Cookie: opsmon_console={session.cookies['opsmon_console']}\r\n"
        form = "Content-Type: application/x-www-form-urlencoded\r\n"
        for _ in range(30):  # 8 MB user names: answered from the Content-Length, never read
            status, body = announce_body(url, "/login", 8 * 2**20, cookie + form)
            assert status == 413 and "too large" in body
        codes = [session.post(f"{url}/login", data={"username": "x" * 15_000, "password": "wrong",
                                                    "csrf_token": token}, timeout=5).status_code for _ in range(30)]
        assert codes == [401] * 5 + [429] * 25
    finally:
        stop(process)
    entries = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(e["action"], e["result"]) for e in entries[-30:]] == \
        [("login", "failed")] * 5 + [("login", "refused")] * 25
    assert all(e["user"] == "x" * 194 + "…[cut]" for e in entries[-30:])
    assert audit.stat().st_size < 30 * 1024


def test_concurrent_wrong_passwords_are_checked_at_most_the_limit(tmp_path):
    Users(tmp_path / "users.json").add(*ADMIN, "admin")
    url, process = start_console(tmp_path, demo_database(tmp_path / "live.db"), tmp_path / "users.json")
    try:
        forms = [login_form(url) for _ in range(60)]
        start = threading.Barrier(len(forms))
        codes = []

        def wrong_password(session, token):
            start.wait()
            codes.append(session.post(f"{url}/login", data={"username": ADMIN[0], "password": "wrong password",
                                                            "csrf_token": token}, timeout=60).status_code)

        threads = [threading.Thread(target=wrong_password, args=form) for form in forms]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(codes) == [401] * 5 + [429] * 55
        session, token = login_form(url)  # the right password is refused too while the address waits
        assert session.post(f"{url}/login", data={"username": ADMIN[0], "password": ADMIN[1], "csrf_token": token},
                            timeout=5).status_code == 429
    finally:
        stop(process)


def test_a_huge_json_body_from_an_admin_is_refused_unread(console):
    url = console["url"]
    session, csrf = login(url, ADMIN)
    headers = (f"Cookie: opsmon_console={session.cookies['opsmon_console']}\r\nX-CSRF-Token: {csrf}\r\n"
               "Content-Type: application/json\r\n")
    for path in ("/api/restore", "/api/backups"):
        status, body = announce_body(url, path, 300 * 2**20, headers)
        assert status == 413 and "too large" in json.loads(body)["error"], path
    assert session.get(f"{url}/api/backups", timeout=5).ok  # the session and the service carry on


def test_a_new_password_ends_the_users_other_sessions(console):
    url = console["url"]
    users = Users(console["work"] / "users.json")
    users.add("changing", "the first long password", "admin")
    first, _ = login(url, ("changing", "the first long password"))
    second, _ = login(url, ("changing", "the first long password"))
    users.add("changing", "the second long password", "admin")  # as `opsmon-backup user add` does
    for session in (first, second):
        assert session.get(f"{url}/api/backups", timeout=5).status_code == 401
    session, token = login_form(url)
    assert session.post(f"{url}/login", data={"username": "changing", "password": "the first long password",
                                              "csrf_token": token}, timeout=5).status_code == 401
    renewed, _ = login(url, ("changing", "the second long password"))
    assert renewed.get(f"{url}/api/backups", timeout=5).ok


@pytest.mark.parametrize("content", ["[]", "", "{not json", '{"users": []}', '{"users": {"bob": "admin"}}',
                                     '{"users": {"bob": {"role": "owner", "password_hash": "x"}}}'])
def test_a_users_file_that_holds_no_users_is_named_by_the_command_and_the_service(tmp_path, content):
    db = demo_database(tmp_path / "live.db", videos=10)
    users = tmp_path / "users.json"
    users.write_text(content)
    config = tmp_path / "opsmon.yml"
    config.write_text(json.dumps({"database": {"path": str(db)}, "backups": {
        "directory": str(tmp_path / "backups"), "listen_address": f"127.0.0.1:{free_port()}",
        "console": {"enabled": True, "users_file": str(users)}}}))
    for command in (["user", "add", "alice"], ["serve"]):
        result = subprocess.run([sys.executable, "-m", "backup_jobs", "--config.file", str(config), *command],
                                input="a very long password\n", capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and f"opsmon-backup: {users}: " in result.stderr, (command, result.stderr)
        assert "Traceback" not in result.stderr
    assert users.read_text() == content  # left as it was for a person to fix


def test_a_users_file_broken_while_the_console_runs_answers_503(tmp_path):
    users = tmp_path / "users.json"
    Users(users).add(*ADMIN, "admin")
    url, process = start_console(tmp_path, demo_database(tmp_path / "live.db"), users)
    try:
        session, _ = login(url, ADMIN)
        users.write_text("[]")
        answer = session.get(f"{url}/api/backups", timeout=5)
        assert answer.status_code == 503 and "users file" in answer.json()["error"]
        assert str(users) not in answer.text  # the path is for the operator's log
    finally:
        stop(process)
    assert f"{users}: not a users file" in (tmp_path / "serve.log").read_text()


def test_user_passwd_changes_only_the_password_and_refuses_a_user_who_is_not_there(tmp_path):
    users_file = tmp_path / "users.json"
    Users(users_file).add("carol", "the first long password", "admin")
    config = tmp_path / "opsmon.yml"
    config.write_text(json.dumps({"database": {"path": str(demo_database(tmp_path / "live.db", videos=1))},
                                  "backups": {"directory": str(tmp_path / "backups"),
                                              "console": {"enabled": True, "users_file": str(users_file)}}}))

    def passwd(name: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "backup_jobs", "--config.file", str(config), "user", "passwd",
                               name], input="the second long password\n", capture_output=True, text=True, timeout=60)

    changed = passwd("carol")
    assert changed.returncode == 0 and "carol (admin)" in changed.stdout, changed.stderr
    assert Users(users_file).authenticate("carol", "the second long password").role == "admin"
    assert Users(users_file).authenticate("carol", "the first long password") is None
    missing = passwd("dave")
    assert missing.returncode == 2 and "no user 'dave'" in missing.stderr and "user add dave" in missing.stderr
    assert Users(users_file).account("dave") is None
