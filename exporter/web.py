"""The exporter's HTTP endpoints (/metrics, /health, /-/healthy, /-/ready), on opsmon's one /metrics path."""

from __future__ import annotations

import json

from opsmon import http

# Leave Prometheus time to receive the answer before its own timeout cuts the scrape.
SCRAPE_TIMEOUT_MARGIN_SECONDS = 0.5

INDEX = b"""<html><head><title>opsmon exporter</title></head><body><h1>opsmon exporter</h1>
<ul><li><a href="/metrics">/metrics</a></li><li><a href="/health">/health</a></li>
<li><a href="/-/healthy">/-/healthy</a></li><li><a href="/-/ready">/-/ready</a></li></ul></body></html>"""


def scrape_timeout(environ, default: float) -> float:
    header = environ.get("HTTP_X_PROMETHEUS_SCRAPE_TIMEOUT_SECONDS")
    try:
        return max(0.1, min(default, float(header) - SCRAPE_TIMEOUT_MARGIN_SECONDS))
    except (TypeError, ValueError):
        return default


def make_app(exporter, credentials: tuple[str, str] | None = None):
    """The WSGI application over an Exporter; `credentials` (user, password) turns basic auth on."""

    def metrics(environ):
        timeout = scrape_timeout(environ, exporter.config.exporter.scrape_timeout_seconds)
        return http.metrics_response(environ, lambda: exporter.scrape(timeout))

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
        method = environ.get("REQUEST_METHOD", "GET")
        if credentials and not http.authorised(environ, *credentials):
            return http.finish(start_response, http.UNAUTHORISED, method)
        route = routes.get(environ.get("PATH_INFO", "/"))
        if route is None:
            response = "404 Not Found", [("Content-Type", "text/plain")], b"Not Found\n"
        else:
            response = route(environ)
        return http.finish(start_response, response, method)

    return app
