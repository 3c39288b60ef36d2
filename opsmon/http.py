"""The one HTTP path for /metrics, and the server both services listen with (TLS, basic auth, timeouts).

/metrics negotiates as Prometheus expects: OpenMetrics only when `Accept` prefers it, gzip only when
`Accept-Encoding` allows it (q-values honoured: `gzip;q=0` is a no), a Content-Length always, HEAD
answered without running a scrape, other methods refused with 405.
"""

from __future__ import annotations

import base64
import gzip
import hmac
import socket
import ssl
from socketserver import ThreadingMixIn
from typing import Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import exposition, openmetrics
from werkzeug.http import parse_accept_header

TEXT = exposition.CONTENT_TYPE_LATEST
OPENMETRICS = openmetrics.exposition.CONTENT_TYPE_LATEST
IDLE_CONNECTION_SECONDS = 30  # a connection that sends nothing for this long is closed, its thread freed

Response = tuple[str, list[tuple[str, str]], bytes]


class Families:
    """What prometheus_client's encoders expect: an object whose collect() yields metric families."""

    def __init__(self, families: Iterable):
        self._families = list(families)

    def collect(self):
        return iter(self._families)


def _media_qualities(accept: str | None) -> dict[str, float]:
    """Each media type the client names (its parameters, such as version=1.0.0, set aside) and its best q."""
    qualities: dict[str, float] = {}
    for value, quality in parse_accept_header(accept or ""):
        media = value.split(";", 1)[0].strip().lower()
        qualities[media] = max(qualities.get(media, 0.0), quality)
    return qualities


def wants_openmetrics(accept: str | None) -> bool:
    """True when the client ranks OpenMetrics above the text format (Prometheus sends both, ranked);
    at equal rank the type it names outright beats a wildcard."""
    q = _media_qualities(accept)
    openmetrics_q = q.get("application/openmetrics-text", 0.0)
    text_q = max(q.get("text/plain", 0.0), q.get("text/*", 0.0), q.get("*/*", 0.0))
    return openmetrics_q > text_q or (openmetrics_q == text_q > 0 and "text/plain" not in q)


def accepts_gzip(accept_encoding: str | None) -> bool:
    return parse_accept_header(accept_encoding or "").quality("gzip") > 0


def metrics_response(environ, collect: Callable[[], Iterable]) -> Response:
    """The answer to a request for /metrics; `collect` runs only for GET."""
    method = environ.get("REQUEST_METHOD", "GET")
    if method not in ("GET", "HEAD"):
        return "405 Method Not Allowed", [("Allow", "GET, HEAD"), ("Content-Type", "text/plain")], \
            b"Method Not Allowed\n"
    openmetrics_wanted = wants_openmetrics(environ.get("HTTP_ACCEPT"))
    headers = [("Content-Type", OPENMETRICS if openmetrics_wanted else TEXT), ("Vary", "Accept, Accept-Encoding")]
    if method == "HEAD":
        return "200 OK", headers, b""
    encode = openmetrics.exposition.generate_latest if openmetrics_wanted else exposition.generate_latest
    body = encode(Families(collect()))
    if accepts_gzip(environ.get("HTTP_ACCEPT_ENCODING")):
        body = gzip.compress(body, compresslevel=6)
        headers.append(("Content-Encoding", "gzip"))
    return "200 OK", headers, body


def finish(start_response, response: Response, method: str = "GET") -> list[bytes]:
    """Send a response with its Content-Length (a HEAD gets the headers alone)."""
    status, headers, body = response
    if method != "HEAD" or body:
        headers = headers + [("Content-Length", str(len(body)))]
    start_response(status, headers)
    return [b"" if method == "HEAD" else body]


def authorised(environ, username: str, password: str) -> bool:
    """HTTP basic auth, both parts compared in constant time so timing tells nothing about either."""
    scheme, _, encoded = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given_user, _, given_password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except ValueError:
        return False
    return hmac.compare_digest(given_user, username) & hmac.compare_digest(given_password, password)


UNAUTHORISED: Response = ("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="opsmon"'),
                                               ("Content-Type", "text/plain")], b"Unauthorized\n")


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops connections when many scrapers come at once


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    timeout = IDLE_CONNECTION_SECONDS

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
