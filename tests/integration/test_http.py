"""The one /metrics path of both services: content negotiation, gzip, Content-Length, HEAD, methods."""

from __future__ import annotations

import base64
import gzip
import socket
from wsgiref.util import setup_testing_defaults

import pytest
import requests
from prometheus_client.core import GaugeMetricFamily

from backup_jobs.users import Users
from opsmon import http
from tests.backup_helpers import demo_database, start_console
from tests.conftest import stop

PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


def call(environ_extra: dict):
    scrapes = []

    def collect():
        scrapes.append(1)
        return [GaugeMetricFamily("opsmon_test", "A test gauge.", value=1)]

    environ = dict(environ_extra)
    setup_testing_defaults(environ)
    answer = {}

    def start_response(status, headers):
        answer.update(status=status, headers=dict(headers))

    body = b"".join(http.finish(start_response, http.metrics_response(environ, collect), environ["REQUEST_METHOD"]))
    return answer["status"], answer["headers"], body, len(scrapes)


@pytest.mark.parametrize("accept, openmetrics", [
    (PROMETHEUS_ACCEPT, True),
    ("application/openmetrics-text; version=1.0.0", True),
    ("text/plain;version=0.0.4", False),
    ("", False),
    ("*/*", False),
    ("application/openmetrics-text;q=0, text/plain", False),
    ("text/plain;q=0.2, application/openmetrics-text;q=0.9", True),
    ("application/openmetrics-text, */*", True),
])
def test_the_format_follows_the_accept_header_with_its_q_values(accept, openmetrics):
    status, headers, body, _ = call({"HTTP_ACCEPT": accept})
    assert status == "200 OK"
    assert headers["Content-Type"].startswith("application/openmetrics-text" if openmetrics else "text/plain")
    assert body.rstrip().endswith(b"# EOF") == openmetrics


@pytest.mark.parametrize("encoding, compressed", [
    ("gzip", True), ("gzip, deflate, br", True), ("gzip;q=0", False), ("gzip;q=0, identity", False),
    ("*", True), ("*;q=0", False), ("identity", False), ("", False), ("GZIP;q=0.5", True),
])
def test_gzip_only_when_accept_encoding_allows_it(encoding, compressed):
    _, headers, body, _ = call({"HTTP_ACCEPT_ENCODING": encoding})
    assert (headers.get("Content-Encoding") == "gzip") == compressed
    assert int(headers["Content-Length"]) == len(body)
    text = gzip.decompress(body) if compressed else body
    assert b"opsmon_test 1.0" in text


def test_head_answers_without_a_scrape_and_other_methods_get_405():
    status, headers, body, scrapes = call({"REQUEST_METHOD": "HEAD"})
    assert status == "200 OK" and body == b"" and scrapes == 0 and headers["Content-Type"].startswith("text/plain")
    for method in ("POST", "DELETE", "PUT"):
        status, headers, _, scrapes = call({"REQUEST_METHOD": method})
        assert status.startswith("405") and headers["Allow"] == "GET, HEAD" and scrapes == 0


def test_basic_auth_compares_the_whole_header():
    good = "Basic " + base64.b64encode(b"prom:secret").decode()
    assert http.authorised({"HTTP_AUTHORIZATION": good}, "prom", "secret")
    for header in ("", "Basic", "Basic !!!", "Bearer x", "Basic " + base64.b64encode(b"prom").decode()):
        assert not http.authorised({"HTTP_AUTHORIZATION": header}, "prom", "secret"), header


def test_the_backup_service_serves_metrics_the_same_way(tmp_path):
    Users(tmp_path / "users.json").add("root", "a very long admin password", "admin")
    url, process = start_console(tmp_path, demo_database(tmp_path / "live.db"), tmp_path / "users.json")
    try:
        plain = requests.get(f"{url}/metrics", headers={"Accept-Encoding": "identity"}, timeout=5)
        assert "Content-Encoding" not in plain.headers and int(plain.headers["Content-Length"]) == len(plain.content)
        zipped = requests.get(f"{url}/metrics", headers={"Accept-Encoding": "gzip"}, timeout=5, stream=True)
        assert zipped.headers["Content-Encoding"] == "gzip"
        assert b"opsmon_backup_job_running" in gzip.decompress(zipped.raw.read())
        assert requests.head(f"{url}/metrics", timeout=5).content == b""
        assert requests.post(f"{url}/metrics", timeout=5).status_code == 405

        # Idle connections are closed in time, and many at once do not stop the service answering.
        idle = [socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=5) for _ in range(200)]
        assert requests.get(f"{url}/metrics", timeout=5).ok
        for connection in idle:
            connection.close()
    finally:
        stop(process)
