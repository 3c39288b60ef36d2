"""The stand-in pager and dead man's switch: Alertmanager's webhooks land here, in a process of its own.

It runs apart from the demo app it watches, so that an outage of the app does not also take down
the pages about it (and fail Alertmanager's notifications on top).

    POST /webhook/<name>   keeps Alertmanager's webhook posts (pager, heartbeat, ...)
    GET  /webhook/<name>   what it received: {"received": count, "last": [the last 100 posts]}
    GET  /heartbeat        when the last heartbeat came and whether it is late (503 when it is)
    GET  /                 the same in words

In production the heartbeat goes to a service that pages when it stops, such as healthchecks.io
(`OPSMON_HEARTBEAT_URL=https://hc-ping.com/<uuid>` in .env), and the pager webhook to your paging
service.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("demo.pager")

HEARTBEAT = "heartbeat"
WEBHOOK_PATH = re.compile(r"^/webhook/([a-z0-9-]{1,40})$")


class Pager:
    """What a pager service would receive from Alertmanager, kept in memory to look at."""

    def __init__(self, late_after: float, keep: int = 100, clock=time.time):
        self.late_after = late_after
        self._keep = keep
        self._clock = clock
        self._received: dict[str, list] = {}
        self._counts: dict[str, int] = {}
        self._last_heartbeat: float | None = None
        self._said_late = False
        self._lock = threading.Lock()

    def receive(self, name: str, body: dict) -> dict:
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + 1
            self._received.setdefault(name, []).append(body)
            del self._received[name][:-self._keep]
            if name == HEARTBEAT:
                self._last_heartbeat = self._clock()
                if self._said_late:
                    self._said_late = False
                    log.info("heartbeat back")
        if name != HEARTBEAT:
            alerts = ", ".join(a.get("labels", {}).get("alertname", "?") for a in body.get("alerts", []))
            log.info("%s: %s %s", name, body.get("status"), alerts)
        return {"received": True}

    def show(self, name: str) -> dict:
        with self._lock:
            return {"received": self._counts.get(name, 0), "last": list(self._received.get(name, []))}

    def heartbeat(self) -> dict:
        """When the last heartbeat came; late when none came for `late_after` seconds (or ever)."""
        with self._lock:
            last = self._last_heartbeat
        age = None if last is None else self._clock() - last
        return {"last_at": None if last is None else datetime.fromtimestamp(last, timezone.utc).isoformat(),
                "age_seconds": None if age is None else round(age, 1),
                "late": age is None or age > self.late_after,
                "late_after_seconds": self.late_after}

    def check(self) -> None:
        """Say once, in the log, that the heartbeat is late: the alerting pipeline is broken."""
        state = self.heartbeat()
        with self._lock:
            if state["late"] and not self._said_late:
                self._said_late = True
                log.error("heartbeat late: %s", describe(state))

    def watch(self, stop: threading.Event, every: float = 5.0) -> None:
        while not stop.wait(every):
            self.check()


def describe(state: dict) -> str:
    if state["last_at"] is None:
        return f"no heartbeat yet (late after {state['late_after_seconds']:g} s): is Alertmanager sending?"
    words = f"last heartbeat at {state['last_at']}, {state['age_seconds']:g} s ago"
    if state["late"]:
        return (f"{words}: LATE (over {state['late_after_seconds']:g} s): Prometheus or Alertmanager "
                "is down, or cannot reach this receiver")
    return f"{words}: on time (late after {state['late_after_seconds']:g} s)"


def make_handler(pager: Pager):
    class Handler(BaseHTTPRequestHandler):
        server_version = "opsmon-pager"

        def log_message(self, format, *args):  # noqa: A002
            pass

        def do_GET(self):
            path = self.path.split("?")[0]
            hook = WEBHOOK_PATH.match(path)
            if hook:
                self._send(200, pager.show(hook.group(1)))
            elif path == "/heartbeat":
                state = pager.heartbeat()
                self._send(503 if state["late"] else 200, state)
            elif path == "/":
                self._send(200, f"opsmon stand-in pager\n{describe(pager.heartbeat())}\n", "text/plain")
            else:
                self._send(404, {"error": "not_found"})

        def do_POST(self):
            hook = WEBHOOK_PATH.match(self.path.split("?")[0])
            if not hook:
                self._send(404, {"error": "not_found"})
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            except ValueError:
                self._send(400, {"error": "the body must be JSON"})
                return
            self._send(200, pager.receive(hook.group(1), body if isinstance(body, dict) else {}))

        def _send(self, status: int, body, content_type: str = "application/json") -> None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.pager", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8081", help="host:port to serve on")
    parser.add_argument("--heartbeat-late-after", type=float, default=300.0,
                        help="seconds without a heartbeat before it is late (Alertmanager sends one a minute)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    host, _, port = args.listen.rpartition(":")
    pager = Pager(args.heartbeat_late_after)
    server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), make_handler(pager))
    server.daemon_threads = True
    stop = threading.Event()
    threading.Thread(target=pager.watch, args=(stop,), daemon=True).start()
    log.info("stand-in pager on http://%s", args.listen)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
