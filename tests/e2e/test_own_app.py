"""docs/own-app.md, followed: the kit and the library installed from a clone, then a sample app that is not the
demo (a clinic's appointments: its own schema, a plain-text log, its own port) in a folder of its own: init, check,
the stack rendered, the exporter scraped by a real Prometheus on the rendered config, a backup created and verified,
status."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import REPO, free_port, running, stop, wait_for

PAGE = REPO / "docs" / "own-app.md"
BIN = Path(sys.executable).parent

CLINIC = '''
"""A clinic's appointments over HTTP: GET /appointments/ID, GET /health."""
import http.server, logging, os, sqlite3, sys
from opsmon import instrument

database, port, log_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
logging.basicConfig(filename=log_file, level=logging.INFO, format="%(asctime)s [%(levelname)s] %(message)s")
instrument.prepare_multiprocess_dir()
connection = sqlite3.connect(database, check_same_thread=False)
connection.executescript("""
    PRAGMA journal_mode=WAL;
    CREATE TABLE IF NOT EXISTS patients (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS appointments (id INTEGER PRIMARY KEY, patient_id INTEGER NOT NULL
        REFERENCES patients(id), starts_at TEXT NOT NULL, kept INTEGER NOT NULL DEFAULT 0);
    INSERT OR IGNORE INTO patients VALUES (1, 'Ada');
    INSERT OR IGNORE INTO appointments VALUES (1, 1, '2026-12-04T09:00', 0);
""")


class AppointmentNotFound(instrument.ValidationError):
    pass


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        try:
            with instrument.track("appointment"):
                if self.path == "/health":
                    return self.reply(200, b"ok")
                number = int(self.path.rsplit("/", 1)[-1])
                row = connection.execute("SELECT starts_at FROM appointments WHERE id = ?", (number,)).fetchone()
                if row is None:
                    raise AppointmentNotFound(f"appointment {number} not found")
                self.reply(200, row[0].encode())
        except instrument.ValidationError:
            self.reply(404, b"no such appointment")

    def reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        logging.info(format, *args)


http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
'''


# What installing the library must not bring into an app's environment.
NOT_IN_THE_APP = ["exporter", "backup_jobs", "demo", "flask", "boto3", "drain3", "yaml", "pydantic"]


def clone_of_repository(tmp_path: Path) -> Path:
    """The repository's files as a clone has them (and files not committed yet), without build leftovers."""
    clone = tmp_path / "clone"
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                           check=True, capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, clone / name)
    return clone


def build_wheel(source: Path, wheels: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels, source],
                   check=True, capture_output=True, timeout=300)


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """`make dist` in a clone, with this venv's pip (its `venv` prerequisite taken as made): the wheels it builds."""
    clone = clone_of_repository(tmp_path_factory.mktemp("dist"))
    venv_directory = Path(sys.prefix)
    made = subprocess.run(["make", "-s", "dist", f"VENV={venv_directory}", "-o", f"{venv_directory}/.installed"],
                          cwd=clone, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stdout + made.stderr
    return clone / "dist"


def page_block(language: str, containing: str) -> str:
    """The page's fenced block of that language holding the text: what a reader copies."""
    blocks = re.findall(rf"```{language}\n(.*?)```", PAGE.read_text(), re.S)
    return next(block for block in blocks if containing in block)


def opsmon(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([BIN / args[0], *args[1:]], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def clinic(tmp_path, python_env):
    """The sample app, started as the page's step 2 says: PROMETHEUS_MULTIPROC_DIR set to its metrics folder."""
    port = free_port()
    env = {**python_env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    (tmp_path / "clinic.py").write_text(CLINIC)
    app = subprocess.Popen([sys.executable, "clinic.py", "clinic.db", str(port), "clinic.log"], cwd=tmp_path, env=env)
    with running(app, f"http://127.0.0.1:{port}/health", "the clinic app"):
        yield tmp_path, port


@pytest.mark.slow
def test_the_page_takes_an_app_of_ones_own_from_install_to_metrics_and_a_verified_backup(clinic):
    folder, app_port = clinic
    # Step 3: the starter config, then the metrics folder of step 2, as the page shows it.
    init = opsmon("opsmon", "init", "--database", "clinic.db", "--log", "clinic.log",
                  "--health-url", f"http://127.0.0.1:{app_port}/health", "--out", "opsmon.yml", cwd=folder)
    assert init.returncode == 0, init.stderr
    metrics_setting = page_block("yaml", "app_metrics_directory").strip()
    text = (folder / "opsmon.yml").read_text()
    text = text.replace("exporter:\n", f"exporter:\n  {metrics_setting}\n", 1)
    (folder / "opsmon.yml").write_text(text)
    document = yaml.safe_load(text)

    # Step 4: a query of one's own with a mistake is named; fixed, the config is valid.
    upcoming = {"name": "clinic_appointments_upcoming", "help": "Appointments not kept yet.",
                "query": "SELECT count(*) AS value FROM appointments WHERE state = 'booked'"}
    (folder / "opsmon.yml").write_text(yaml.safe_dump({**document, "business": [upcoming]}, sort_keys=False))
    broken = opsmon("opsmon", "check", "--config.file", "opsmon.yml", cwd=folder)
    assert broken.returncode == 2
    assert ("opsmon.yml: business[0].query: clinic_appointments_upcoming: no such column: state"
            in broken.stderr.splitlines())
    upcoming["query"] = "SELECT count(*) AS value FROM appointments WHERE kept = 0"
    (folder / "opsmon.yml").write_text(yaml.safe_dump({**document, "business": [upcoming]}, sort_keys=False))
    valid = opsmon("opsmon", "check", "--config.file", "opsmon.yml", cwd=folder)
    assert (valid.returncode, valid.stdout.strip()) == (0, "opsmon.yml: valid"), valid.stderr

    # Traffic, a normal 404 among it.
    for path in ("/appointments/1", "/appointments/1", "/appointments/99"):
        requests.get(f"http://127.0.0.1:{app_port}{path}", timeout=5)

    # Steps 5 and 6: the page's stack section (this test's ports, scraped every second), rendered; the exporter,
    # scraped by a real Prometheus started on the rendered config.
    exporter_port, prometheus_port = free_port(), free_port()
    stack = yaml.safe_load(page_block("yaml", "stack:"))["stack"]
    stack["hosts"][0]["exporter"] = f"127.0.0.1:{exporter_port}"
    stack["prometheus"] = {"scrape_interval": "1s", "scrape_timeout": "1s"}
    (folder / "opsmon.yml").write_text(yaml.safe_dump({**document, "business": [upcoming], "stack": stack},
                                                       sort_keys=False))
    rendered = opsmon("opsmon", "--config.file", "opsmon.yml", "render", "--out", "stack", cwd=folder)
    assert rendered.returncode == 0, rendered.stderr
    assert "smtp_auth_password_file: /etc/opsmon/smtp-password" in (folder / "stack/alertmanager.yml").read_text()
    with open(folder / "services.log", "ab") as log:
        exporter = subprocess.Popen([BIN / "opsmon-exporter", "--config.file", "opsmon.yml",
                                     "--web.listen-address", f"127.0.0.1:{exporter_port}"],
                                    cwd=folder, stdout=log, stderr=subprocess.STDOUT)
        prometheus = subprocess.Popen(["prometheus", "--config.file=stack/prometheus.yml", "--storage.tsdb.path=tsdb",
                                       f"--web.listen-address=127.0.0.1:{prometheus_port}"],
                                      cwd=folder, stdout=log, stderr=subprocess.STDOUT)
    try:
        def query(expr: str) -> dict:
            answer = requests.get(f"http://127.0.0.1:{prometheus_port}/api/v1/query", params={"query": expr},
                                  timeout=5).json()
            return {tuple(sorted(series["metric"].items())): float(series["value"][1])
                    for series in answer["data"]["result"]}

        def scraped() -> dict:
            found = query('{job="opsmon-exporter",host="myhost",__name__=~"app_request.*_total|clinic_.*|'
                          'opsmon_app_metric_files|opsmon_probe_success|opsmon_log_messages_total"}')
            return found if len({dict(labels)["__name__"] for labels in found}) == 6 else None

        found = wait_for(scraped, timeout=60, what="the exporter's series in Prometheus")
        by_name = {(dict(labels)["__name__"], dict(labels).get("kind") or dict(labels).get("level")): value
                   for labels, value in found.items()}
        assert by_name[("app_requests_total", None)] >= 3
        assert by_name[("app_request_errors_total", "client")] == 1
        assert by_name[("app_request_errors_total", "server")] == 0
        assert by_name[("clinic_appointments_upcoming", None)] == 1
        assert by_name[("opsmon_app_metric_files", None)] > 0
        assert by_name[("opsmon_probe_success", None)] == 1
        assert by_name[("opsmon_log_messages_total", "info")] >= 3  # the clinic's plain-text request lines
    finally:
        stop(prometheus)
        stop(exporter)

    # Step 7: a backup, verified, and what status says of it.
    created = opsmon("opsmon-backup", "--config.file", "opsmon.yml", "create", "--tier", "daily", cwd=folder)
    assert created.returncode == 0, created.stderr
    backup_id = created.stdout.strip().splitlines()[-1]
    verified = opsmon("opsmon-backup", "--config.file", "opsmon.yml", "verify", backup_id, cwd=folder)
    assert verified.returncode == 0, verified.stderr
    status = opsmon("opsmon-backup", "--config.file", "opsmon.yml", "status", cwd=folder)
    assert re.search(rf"^ok +daily backup +{backup_id}, taken", status.stdout, re.M), status.stdout
    assert (folder / "clinic-backups").is_dir()


def test_the_page_s_inhibitions_render_for_its_app_and_its_own_rule(tmp_path):
    """The page's example: myapp down holds back the check of the `app` probe `opsmon init` wrote, and its own rule."""
    example = yaml.safe_load(page_block("yaml", "serves:"))
    example["exporter"]["probes"] = [{"service": "app", "url": "http://127.0.0.1:8000/health"}]
    (tmp_path / "opsmon.yml").write_text(yaml.safe_dump({"database": {"path": "myapp.db"}, **example}))
    rendered = opsmon("opsmon", "--config.file", "opsmon.yml", "render", "--out", "stack", cwd=tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    rules = yaml.safe_load((tmp_path / "stack/alertmanager.yml").read_text())["inhibit_rules"]
    assert {"source_matchers": ['alertname="OpsmonProcessDown"', 'process="myapp"'],
            "target_matchers": ['alertname=~"OpsmonExternalService(Down|Slow)"', 'service=~"app"'],
            "equal": ["host"]} in rules
    assert rules[-1] == example["stack"]["alertmanager"]["inhibit_rules"][0]


@pytest.mark.slow
def test_the_kit_installs_with_its_three_commands_and_the_library(dist):
    """The page's step 1: `pip install .` (or make dist's wheel) gives opsmon, opsmon-exporter and opsmon-backup,
    and holds the library."""
    [wheel] = dist.glob("opsmon-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        [entry_points] = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
        scripts = archive.read(entry_points).decode()
    assert re.findall(r"^(opsmon[\w-]*) = ", scripts, re.M) == ["opsmon", "opsmon-backup", "opsmon-exporter"]
    assert "opsmon/instrument/metrics.py" in names
    assert not [name for name in names if name.startswith("instrument/")]


@pytest.mark.slow
def test_the_library_installs_alone_and_records_a_request(tmp_path, dist):
    """What an app's environment gets from make dist's opsmon-instrument wheel, its dependencies resolved by pip:
    the library and prometheus-client only."""
    app_env = tmp_path / "app-env"
    venv.create(app_env, with_pip=True)
    [wheel] = dist.glob("opsmon_instrument-*.whl")
    subprocess.run([app_env / "bin" / "python", "-m", "pip", "install", "-q", wheel], check=True,
                   capture_output=True, timeout=300)
    app = (
        "import importlib.metadata, importlib.util, prometheus_client\n"
        "from opsmon import instrument\n"
        "with instrument.track('checkout'):\n"
        "    pass\n"
        "print(prometheus_client.generate_latest().decode())\n"
        "print(sorted(d.metadata['Name'].lower().replace('_', '-') for d in importlib.metadata.distributions()))\n"
        f"print([name for name in {NOT_IN_THE_APP!r} if importlib.util.find_spec(name)])\n"
    )
    # From a folder of its own, as an app runs: nothing of the repository on its path.
    result = subprocess.run([app_env / "bin" / "python", "-c", app], cwd=tmp_path, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin"}, timeout=60)
    assert result.returncode == 0, result.stderr
    assert 'app_requests_total{handler="checkout"} 1.0' in result.stdout
    installed, importable = result.stdout.rstrip().splitlines()[-2:]
    # What venv puts in every environment (pip; setuptools too before Python 3.12), then the wheel's own.
    assert set(ast.literal_eval(installed)) - {"pip", "setuptools"} == {"opsmon-instrument", "prometheus-client"}
    assert importable == "[]", result.stdout
