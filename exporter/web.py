"""The exporter's HTTP endpoints (/metrics, /health, /-/healthy, /-/ready), with optional TLS and basic auth."""

from __future__ import annotations

import base64
import gzip
import hmac
import json
import socket
import ssl
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client.exposition import choose_encoder

# Leave Prometheus time to receive the answer before its own timeout cuts the scrape.
SCRAPE_TIMEOUT_MARGIN_SECONDS = 0.5

INDEX = b"""<html><head><title>opsmon exporter</title></head><body><h1>opsmon exporter</h1>
<ul><li><a href="/metrics">/metrics</a></li><li><a href="/health">/health</a></li>
<li><a href="/-/healthy">/-/healthy</a></li><li><a href="/-/ready">/-/ready</a></li></ul></body></html>"""


class Families:
    """What prometheus_client's encoders expect: an object whose collect() yields metric families."""

    def __init__(self, families):
        self._families = families

    def collect(self):
        return iter(self._families)


def scrape_timeout(environ, default: float) -> float:
    header = environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS")
    try:
        return max(0.1, min(default, float(header) - SCRAPE_TIMEOUT_MARGIN_SECONDS))
    except (TypeError, ValueError):
        return default


def _authorised(environ, username: str, password: str) -> bool:
    scheme, _, encoded = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given_user, _, given_password = base64.b64decode(encoded).decode().partition(":")
    except ValueError:
        return False
    # Compare both in constant time, so timing tells nothing about either.
    return hmac.compare_digest(given_user, username) & hmac.compare_digest(given_password, password)


def make_app(exporter, credentials: tuple[str, str] | None = None):
    """The WSGI application over an Exporter; `credentials` (user, password) turns basic auth on."""

    def metrics(environ):
        families = exporter.scrape(scrape_timeout(environ, exporter.config.exporter.scrape_timeout_seconds))
        encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT"))
        body = encoder(Families(families))
        headers = [("Content-Type", content_type)]
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
            body = gzip.compress(body)
            headers.append(("Content-Encoding", "gzip"))
        return "200 OK", headers, body

    def health(environ):
        report = exporter.health()
        status = "503 Service Unavailable" if report["status"] == "down" else "200 OK"
        return status, [("Content-Type", "application/json")], json.dumps(report, indent=2).encode()

    def text(body: bytes):
        return lambda environ: ("200 OK", [("Content-Type", "text/plain; charset=utf-8")], body)

    routes = {
        "/metrics": metrics,
        "/health": health,
        "/-/healthy": text(b"Healthy\n"),
        "/-/ready": text(b"Ready\n"),
        "/": lambda environ: ("200 OK", [("Content-Type", "text/html")], INDEX),
    }

    def app(environ, start_response):
        if credentials and not _authorised(environ, *credentials):
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="opsmon"'),
                                                ("Content-Type", "text/plain")])
            return [b"Unauthorized\n"]
        route = routes.get(environ.get("PATH_INFO", "/"))
        if route is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"Not Found\n"]
        status, headers, body = route(environ)
        start_response(status, headers + [("Content-Length", str(len(body)))])
        return [body]

    return app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass  # one line per scrape would drown the log


def serve(app, listen_address: str, tls: tuple[str, str] | None = None):
    """Bind and return the server (call serve_forever on it); ':9877' binds every interface."""
    host, _, port = listen_address.rpartition(":")
    host = host.strip("[]")
    server_class = _Server6 if ":" in host else _Server
    server = make_server(host or "0.0.0.0", int(port), app, server_class=server_class, handler_class=_QuietHandler)
    if tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    return server
