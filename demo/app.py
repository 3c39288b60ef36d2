"""The demo app: an HTTP API on 8080, pipeline worker processes, a traffic generator, and faults to inject.

Endpoints:
    POST /videos {"title": ...}        queue a video            GET /videos/<id>   one video
    GET  /stats                         counts                   GET /health        liveness
    GET  /external/api                  the stand-in external service the pipeline calls
    GET|POST /admin/faults              error_rate, latency_seconds, external_available,
                                        external_latency_seconds: change them at run time

The stand-in pager that receives Alertmanager's webhooks is demo/pager.py, a process of its own.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import random
import re
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from demo import business
from demo.db import connect, create_schema
from opsmon import instrument
from opsmon.instrument import (DataIntegrityError, ExternalServiceError, OpsmonError, ResourceExhaustedError,
                               Severity, ValidationError)

log = logging.getLogger("demo")

FAULT_DEFAULTS = {"error_rate": 0.0, "latency_seconds": 0.05, "external_available": 1.0,
                  "external_latency_seconds": 0.01, "storage_full": 0.0}
# storage_full: every job fails with a kind of error the log has not shown before (a new log pattern).
BOOLEAN_FAULTS = ("external_available", "storage_full")


class TranscodeError(OpsmonError):
    """How an app extends the hierarchy: its own category, with a message for its users."""

    category = "processing"
    severity = Severity.MEDIUM
    default_user_message = "The video could not be processed. It will be retried automatically."


class NotFound(OpsmonError):
    category = "not_found"
    severity = Severity.LOW
    default_user_message = "There is no such video."


class Faults:
    """Fault settings shared by every process of the app (shared memory, set before the workers fork).

    Lock-free on purpose: a worker killed while holding a shared lock would leave it held forever.
    """

    def __init__(self, context):
        self._values = context.RawArray("d", list(FAULT_DEFAULTS.values()))

    def get(self) -> dict:
        values = dict(zip(FAULT_DEFAULTS, self._values[:]))
        for key in BOOLEAN_FAULTS:
            values[key] = bool(values[key])
        return values

    def update(self, changes: dict) -> dict:
        unknown = sorted(set(changes) - set(FAULT_DEFAULTS))
        if unknown:
            raise ValidationError(f"unknown fault setting(s): {', '.join(unknown)}",
                                  user_message=f"Unknown setting(s): {', '.join(unknown)}.")
        checked = {}
        for key, value in changes.items():
            if key in BOOLEAN_FAULTS:
                if not isinstance(value, bool):
                    raise ValidationError(f"{key} must be true or false", user_message=f"{key} must be true or false.")
                checked[key] = 1.0 if value else 0.0
                continue
            limit = 1.0 if key == "error_rate" else 60.0
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= limit:
                raise ValidationError(f"{key} must be a number from 0 to {limit:g}",
                                      user_message=f"{key} must be a number from 0 to {limit:g}.")
            checked[key] = float(value)
        for index, key in enumerate(FAULT_DEFAULTS):
            if key in checked:
                self._values[index] = checked[key]
        log.warning("faults changed: %s", checked, extra={"faults": self.get()})
        return self.get()


# ---- the pipeline, in worker processes -------------------------------------------------------

def claim_video(connection) -> int | None:
    row = connection.execute(
        "UPDATE videos SET status = 'processing', updated_at = ? WHERE id = "
        "(SELECT id FROM videos WHERE status = 'queued' ORDER BY id LIMIT 1) RETURNING id",
        (time.time(),)).fetchone()
    return row[0] if row else None


def call_external_api(session: requests.Session, url: str) -> None:
    """One step of a job, not a request of its own: its failures count in app_errors_total."""
    try:
        response = session.get(url, timeout=2)
    except requests.Timeout:
        raise ExternalServiceError("external API timed out after 2 s", service="external-api") from None
    except requests.RequestException as err:
        raise ExternalServiceError(f"external API unreachable: {err}", service="external-api") from None
    if response.status_code != 200:
        raise ExternalServiceError(f"external API answered {response.status_code}", service="external-api")


def pipeline_failure(video_id: int, rng: random.Random) -> OpsmonError:
    """What the injected error rate makes a job fail with: the kinds a real pipeline logs."""
    kind = rng.randrange(3)
    if kind == 0:
        return TranscodeError(f"transcoding video {video_id} failed: ffmpeg exited with status "
                              f"{rng.choice([1, 69, 137])}", video_id=video_id)
    if kind == 1:
        return ValidationError(f"upload of video {video_id} rejected: the file is not a video "
                               f"({rng.choice(['text/html', 'application/zip'])})", video_id=video_id)
    return DataIntegrityError(f"checksum of video {video_id} does not match its upload "
                              f"({rng.getrandbits(48):012x})", video_id=video_id)


def process_video(connection, session, video_id: int, faults: Faults, api_url: str, rng: random.Random) -> None:
    settings = faults.get()
    with instrument.track("process_video"):
        time.sleep(settings["latency_seconds"] * rng.uniform(0.5, 1.5))
        try:
            call_external_api(session, api_url)
        except ExternalServiceError as err:
            # Not this video's fault: back in the queue for a later try.
            instrument.record_error(err)
            log.warning("video %s waits for the external API: %s", video_id, err, extra={"reference": err.reference})
            connection.execute("UPDATE videos SET status = 'queued' WHERE id = ?", (video_id,))
            return
        if settings["storage_full"]:
            connection.execute("UPDATE videos SET status = 'failed', updated_at = ? WHERE id = ?",
                               (time.time(), video_id))
            raise ResourceExhaustedError(f"no space left on device writing the transcoded file of video {video_id}",
                                         video_id=video_id)
        if rng.random() < settings["error_rate"]:
            connection.execute("UPDATE videos SET status = 'failed', updated_at = ? WHERE id = ?",
                               (time.time(), video_id))
            raise pipeline_failure(video_id, rng)
        now = time.time()
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute("UPDATE videos SET status = 'processed', updated_at = ? WHERE id = ?", (now, video_id))
            connection.execute("INSERT INTO processed_videos (video_id, processed_at, duration_seconds) "
                               "VALUES (?, ?, ?)", (video_id, now, rng.uniform(1, 30)))
            approved = rng.random() < 0.7
            monetized = approved and rng.random() < 0.3
            if approved:
                connection.execute("INSERT INTO approvals (video_id, approved_at) VALUES (?, ?)", (video_id, now))
            if monetized:
                connection.execute("INSERT INTO monetizations (video_id, monetized_at, revenue_cents) "
                                   "VALUES (?, ?, ?)", (video_id, now, rng.randint(1, 500)))
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        # Counted once committed, where the events happen: a restore that later takes these rows
        # away does not lower the counters.
        events = business.events()
        events.processed.inc()
        if approved:
            events.approved.inc()
        if monetized:
            events.monetized.inc()


def worker(db_path: str, faults: Faults, api_url: str, log_file: str | None, stop, listening) -> None:
    # Ctrl-C and a supervisor's SIGTERM reach the whole group; the parent stops us in order instead,
    # so no video is left half-processed.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    listening.close()  # the parent's HTTP socket, inherited through fork; only the parent serves
    parent = os.getppid()
    # Forked children end with os._exit, which skips atexit: the worker stops its log writer itself.
    logs = instrument.setup_logging(log_file)
    try:
        work(db_path, faults, api_url, stop, parent)
    finally:
        logs.stop()


def work(db_path: str, faults: Faults, api_url: str, stop, parent: int) -> None:
    connection = connect(db_path)
    session = requests.Session()
    rng = random.Random()
    log.info("worker %s started", os.getpid())
    while not stop.value and os.getppid() == parent:  # a parent killed with -9 leaves no orphans
        try:
            video_id = claim_video(connection)
            if video_id is None:
                time.sleep(0.2)
                continue
            process_video(connection, session, video_id, faults, api_url, rng)
        except OpsmonError:
            pass  # track() logged it, with its reference, category and severity
        except Exception:  # noqa: BLE001 - a worker logs and goes on; it never dies of one video
            log.exception("unexpected error in the pipeline")
            time.sleep(1)
    log.info("worker %s stopped", os.getpid())


# ---- the HTTP API ----------------------------------------------------------------------------

STATUS_BY_CATEGORY = {"validation": 400, "not_found": 404, "external_service": 502}
# The handlers the injected error rate applies to: the app's own work, not its admin and health endpoints.
FAULTY_HANDLERS = {"create_video", "get_video", "stats"}
VIDEO_PATH = re.compile(r"^/videos/(\d+)$")


class Handler(BaseHTTPRequestHandler):
    server_version = "opsmon-demo"
    app: "DemoApp"

    def log_message(self, format, *args):  # noqa: A002
        pass  # the app logs what matters as JSON lines

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def _route(self, method: str):
        path = self.path.split("?")[0]
        routes = {
            ("GET", "/health"): ("health", lambda: (200, {"status": "ok"})),
            ("GET", "/stats"): ("stats", self.app.stats),
            ("POST", "/videos"): ("create_video", lambda: (201, self.app.create_video(self._body()))),
            ("GET", "/external/api"): ("external_api_server", self.app.external_api),
            ("GET", "/admin/faults"): ("faults", lambda: (200, self.app.faults.get())),
            ("POST", "/admin/faults"): ("faults", lambda: (200, self.app.faults.update(self._body()))),
        }
        if (method, path) in routes:
            return routes[(method, path)]
        match = VIDEO_PATH.match(path)
        if method == "GET" and match:
            return "get_video", lambda: (200, self.app.get_video(int(match.group(1))))
        return None, None

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            raise ValidationError("request body is not JSON", user_message="The request body must be JSON.") from None
        if not isinstance(body, dict):
            raise ValidationError("request body is not an object", user_message="The request body must be an object.")
        return body

    def _handle(self, method: str) -> None:
        name, action = self._route(method)
        if action is None:
            self._send(404, {"error": "not_found", "message": "No such endpoint."})
            return
        try:
            with instrument.track(f"http_{name}", method=method, path=self.path):
                if name in FAULTY_HANDLERS:
                    self.app.maybe_fail(name)
                status, body = action()
        except OpsmonError as err:  # track() logged it, with its reference
            status, body = STATUS_BY_CATEGORY.get(err.category, 500), err.to_dict()
        except Exception as exc:  # noqa: BLE001 - the user gets the reference of the traceback track() logged
            error = OpsmonError("unhandled error", reference=instrument.reference_of(exc))
            status, body = 500, error.to_dict()
        self._send(status, body)

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class DemoApp:
    def __init__(self, db_path: str, faults: Faults):
        self.faults = faults
        # One connection for every request thread (the server starts a thread per request), used
        # under a lock: SQLite serialises writers anyway, and requests are short.
        self._connection = connect(db_path)
        self._lock = threading.Lock()

    def _query(self, sql: str, parameters=()):
        with self._lock:
            return self._connection.execute(sql, parameters).fetchall()

    def create_video(self, body: dict) -> dict:
        title = body.get("title")
        if not isinstance(title, str) or not 0 < len(title) <= 200:
            raise ValidationError("title missing or too long", user_message="Give a title of 1 to 200 characters.")
        now = time.time()
        rows = self._query("INSERT INTO videos (title, status, created_at, updated_at) "
                           "VALUES (?, 'queued', ?, ?) RETURNING id", (title, now, now))
        return {"id": rows[0][0], "status": "queued"}

    def get_video(self, video_id: int) -> dict:
        rows = self._query("SELECT * FROM videos WHERE id = ?", (video_id,))
        if not rows:
            raise NotFound(f"video {video_id} does not exist")
        return dict(rows[0])

    def stats(self):
        counts = dict(self._query("SELECT status, count(*) FROM videos GROUP BY status"))
        return 200, {"videos": counts}

    def maybe_fail(self, handler: str) -> None:
        if random.random() < self.faults.get()["error_rate"]:
            raise OpsmonError(f"injected failure in {handler}")

    def external_api(self):
        settings = self.faults.get()
        time.sleep(settings["external_latency_seconds"])
        if not settings["external_available"]:
            return 503, {"status": "unavailable"}
        return 200, {"status": "ok"}


def generate_traffic(base_url: str, rate: float, stop) -> None:
    """Queue videos through the API at `rate` per second, as users would (loopback only)."""
    session = requests.Session()
    number = 0
    while not stop.value:
        time.sleep(1.0 / rate)
        number += 1
        try:
            session.post(f"{base_url}/videos", json={"title": f"upload {number}"}, timeout=5)
        except requests.RequestException as err:
            log.warning("traffic generator could not reach the API: %s", err)


def run(db_path: str, host: str, port: int, workers: int, rate: float, log_file: str | None,
        pidfile: str | None) -> int:
    """Start everything; stop on SIGTERM or SIGINT."""
    instrument.prepare_multiprocess_dir()
    business.events()  # the business counters exist at 0 before the workers fork
    for path in (db_path, log_file, pidfile):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    create_schema(db_path)
    server = ThreadingHTTPServer((host, port), Handler)  # bind first: a busy port fails before any fork
    server.daemon_threads = True
    context = multiprocessing.get_context("fork")
    faults = Faults(context)
    stop = context.RawValue("b", 0)  # set to 1 to stop; lock-free like Faults
    api_url = f"http://127.0.0.1:{port}/external/api"
    processes = [context.Process(target=worker, args=(db_path, faults, api_url, log_file, stop, server.socket),
                                 name=f"worker-{i}") for i in range(workers)]
    for process in processes:
        process.start()
    # Signals are taken by sigtimedwait below, never by a handler that could interrupt a lock holder.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    instrument.setup_logging(log_file)  # after the fork: each process has its own writer thread

    Handler.app = DemoApp(db_path, faults)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    if rate > 0:
        threading.Thread(target=generate_traffic, args=(f"http://127.0.0.1:{port}", rate, stop), daemon=True).start()
    if pidfile:
        with open(pidfile, "w") as out:
            out.write(f"{os.getpid()}\n")
    log.info("demo app serving on http://%s:%s with %d workers", host, port, workers)

    while signal.sigtimedwait({signal.SIGTERM, signal.SIGINT}, 1) is None:
        dead = [p for p in processes if not p.is_alive()]
        if dead:
            log.error("worker %s died with exit code %s; stopping", dead[0].pid, dead[0].exitcode)
            break
    stop.value = 1
    for process in processes:  # workers first: they still call the external API this server answers
        process.join(10)
        instrument.process_exited(process.pid)
    server.shutdown()
    if pidfile and os.path.exists(pidfile):
        os.unlink(pidfile)
    log.info("demo app stopped")
    return 0
