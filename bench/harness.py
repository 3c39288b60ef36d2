"""What the benchmarks and the tests both use: free loopback ports, polling with a deadline, stopping a
child process, an HTTP server on loopback, and a fingerprint of the demo database."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import threading
import time
from contextlib import closing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, timeout: float = 15.0, interval: float = 0.1, what: str = "condition"):
    """Poll until condition() is truthy, and return it; raise TimeoutError naming `what` (text, or a
    function giving it at the time of failure) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            result = condition()
        except Exception as err:  # noqa: BLE001 - not ready yet (connection refused, missing file...)
            result, last_error = None, err
        if result:
            return result
        time.sleep(interval)
    what = what() if callable(what) else what
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}; last error: {last_error!r}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that writes no access log: a stand-in's requests would bury a test's own output."""

    def log_message(self, *args) -> None:
        pass


class LoopbackServer:
    """`handler` served on a free loopback port from a thread of its own, until close()."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def fingerprint(database: Path) -> dict:
    """Row count and id sum per table: enough to tell two states of the demo database apart. opsmon's own
    table (its identity, the drill canary) is not the app's data and is left out."""
    with closing(sqlite3.connect(database)) as connection:
        tables = [r[0] for r in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name != '_opsmon' "
            "ORDER BY name")]
        return {t: tuple(connection.execute(f'SELECT count(*), total(rowid) FROM "{t}"').fetchone()) for t in tables}
