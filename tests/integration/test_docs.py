"""The docs a newcomer reads: generated pages equal what their generators write now (the config schema, a live
/metrics), README stays short, and no tracked file points at a file outside the repository."""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from opsmon import docs
from opsmon.catalog import record_location_drill
from tests.conftest import FIXTURES, REPO, free_port, start, stop, wait_for, write_config

MARKDOWN_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def tracked_files() -> list[Path]:
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    names = [name for name in listing.split("\0") if name]
    return [REPO / name for name in names if (REPO / name).is_file()]


def text_of(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:  # an image, a database fixture
        return ""


def difference(committed: str, generated: str) -> str:
    return "".join(difflib.unified_diff(committed.splitlines(True), generated.splitlines(True),
                                        "committed", "generated"))


# ---- the configuration reference --------------------------------------------------------------

def test_the_config_reference_is_what_the_schema_generates():
    committed = docs.CONFIG_PAGE.read_text()
    generated = docs.with_generated(committed, docs.CONFIG_COMMAND, docs.config_reference())
    assert committed == generated, f"run {docs.CONFIG_COMMAND}\n{difference(committed, generated)}"


def test_every_config_key_has_a_type_default_and_description():
    keys = docs.config_keys()
    assert {"database.path", "exporter.probes[].url", "backups.litestream.enabled", "stack.slo.objective"} <= \
        {key for key, _ in keys}
    assert [key for key, field in keys if not field.description] == []


def test_the_config_reference_names_types_as_a_user_writes_them():
    rows = {line.split(" | ")[0].strip("| `"): line.split(" | ") for line in docs.config_reference().splitlines()
            if line.startswith("| `")}
    assert rows["exporter.listen_address"][1:3] == ["host:port", "`127.0.0.1:9877`"]
    assert rows["backups.schedule.daily"][1:3] == ["cron expression", "`0 2 * * *`"]
    assert rows["backups.compression_level"][1] == "integer (>= 0, <= 3)"
    assert rows["exporter.probes[].method"][1] == "`GET` \\| `HEAD` \\| `POST` \\| `PUT` \\| `OPTIONS`"
    assert rows["database.path"][2] == "required"
    assert rows["backups.offsite"][1:3] == ["section or null", "none"]


def test_a_page_keeps_its_hand_written_part_and_replaces_the_generated_one():
    marker = docs.MARKER.format(command="make docs")
    page = f"# Title\n\nWritten by hand.\n\n{marker}\n\nold table\n"
    assert docs.with_generated(page, "make docs", "new table\n") == \
        f"# Title\n\nWritten by hand.\n\n{marker}\n\nnew table\n"
    assert docs.with_generated("# Title\n", "make docs", "table\n") == f"# Title\n\n{marker}\n\ntable\n"



def test_the_config_command_rewrites_the_generated_part_and_keeps_the_rest(tmp_path, monkeypatch):
    page = tmp_path / "config.md"
    page.write_text(f"# Mine\n\n{docs.MARKER.format(command=docs.CONFIG_COMMAND)}\n\nstale\n")
    monkeypatch.setattr(docs, "CONFIG_PAGE", page)
    assert docs.main(["config"]) == 0
    assert page.read_text() == docs.with_generated("# Mine\n", docs.CONFIG_COMMAND, docs.config_reference())


def test_the_config_command_names_the_page_it_cannot_write(tmp_path, monkeypatch, capsys):
    page = tmp_path / "no-docs-folder" / "config.md"
    monkeypatch.setattr(docs, "CONFIG_PAGE", page)
    assert docs.main(["config"]) == 1
    assert f"cannot write {page}: No such file or directory" in capsys.readouterr().err

# ---- the metrics reference, from the real services --------------------------------------------

# Families whose samples appear only once the demo has done something: the page is written when they are there.
EVENTUAL = {"app_errors_total", "app_request_errors_total", "business_videos_monetized_total",
            "opsmon_log_pattern_info"}


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    """The demo app, the exporter and the backup service on the shipped config, on free loopback ports."""
    run_dir = tmp_path_factory.mktemp("run")
    (run_dir / "logs").mkdir()
    shutil.copytree(FIXTURES / "catalog", run_dir / "backups")
    demo_port, exporter_port, backup_port = free_port(), free_port(), free_port()
    # A drill on record, so that the drill families are published too.
    record_location_drill(run_dir / "backups", "local", at=1764129600.0, source="20261126T020000Z-daily", error=None,
                          rto_seconds=41.3, rpo_seconds=14400.0)
    # The repository's opsmon.yml, pointed at the test's folder and ports.
    text = (REPO / "opsmon.yml").read_text().replace(".run/", f"{run_dir}/").replace(":8080/", f":{demo_port}/")
    document = yaml.safe_load(text)
    document["backups"]["listen_address"] = f"127.0.0.1:{backup_port}"
    document["backups"]["litestream"]["binary"] = str(Path(sys.executable).with_name("litestream"))
    document["backups"]["litestream"]["metrics_address"] = f"127.0.0.1:{free_port()}"
    config = write_config(run_dir / "opsmon.yml", document)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    demo = start(["-m", "demo", "serve", "--db", str(run_dir / "demo.db"), "--listen", f"127.0.0.1:{demo_port}",
                  "--metrics-dir", str(run_dir / "app-metrics"), "--log-file", str(run_dir / "logs/demo.jsonl"),
                  "--pidfile", str(run_dir / "demo.pid"), "--rate", "20", "--workers", "3"],
                 env, log=run_dir / "demo.out")
    processes = [demo]
    try:
        wait_for(lambda: requests.get(f"http://127.0.0.1:{demo_port}/health", timeout=1).ok, what="the demo app")
        # Errors, so that the error families have samples and their labels show.
        requests.post(f"http://127.0.0.1:{demo_port}/admin/faults", json={"error_rate": 0.3}, timeout=5)
        # Without the GPU collector, so that a machine with a GPU writes the same page (the page lists its metrics).
        processes.append(start(["-m", "exporter", "--config.file", str(config), "--web.listen-address",
                                f"127.0.0.1:{exporter_port}", "--no-collector.gpu"], env, log=run_dir / "exporter.out"))
        processes.append(start(["-m", "backup_jobs", "--config.file", str(config), "serve"], env,
                               log=run_dir / "serve.out"))
        urls = {"opsmon-exporter": f"http://127.0.0.1:{exporter_port}",
                "opsmon-backup serve": f"http://127.0.0.1:{backup_port}"}
        for url in urls.values():
            wait_for(lambda url=url: requests.get(f"{url}/-/healthy", timeout=1).ok, timeout=30, what=url)
        yield urls
    finally:
        for process in reversed(processes):
            stop(process)


def test_the_metrics_reference_is_what_the_running_services_publish(services):
    committed = docs.METRICS_PAGE.read_text() if docs.METRICS_PAGE.exists() else ""
    latest = {}

    def generated_now():
        expositions = {service: docs.scrape(url) for service, url in services.items()}
        reference = docs.metrics_reference(expositions, docs.labels_in_page(committed))
        latest["page"] = docs.with_generated(committed, docs.METRICS_COMMAND, reference)
        if os.environ.get("UPDATE_DOCS"):
            return EVENTUAL <= set(docs.metric_families(expositions["opsmon-exporter"]))
        return latest["page"] == committed

    wait_for(generated_now, timeout=90, interval=1,
             what=lambda: f"the metrics reference; run {docs.METRICS_COMMAND}\n"
                          f"{difference(committed, latest.get('page', ''))}")
    if os.environ.get("UPDATE_DOCS"):
        docs.METRICS_PAGE.write_text(latest["page"])



def test_the_metrics_command_prints_the_reference_of_any_running_services(services, capsys):
    assert docs.main(["metrics", "--exporter", services["opsmon-exporter"],
                      "--backup", services["opsmon-backup serve"]]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("## opsmon-exporter\n")
    assert "| `opsmon_scrape_collector_success` | gauge | `collector` |" in printed
    assert "\n## opsmon-backup serve\n" in printed and "| `opsmon_litestream_up` | gauge |  |" in printed


def test_a_family_without_samples_on_this_machine_keeps_the_labels_the_page_lists():
    """A CI machine whose kernel shows no disk serves opsmon_disk_read_bytes_total without a sample."""
    exposition = ("# HELP opsmon_disk_read_bytes_total Bytes read from the device.\n"
                  "# TYPE opsmon_disk_read_bytes_total counter\n")
    page = "| `opsmon_disk_read_bytes_total` | counter | `device` | Bytes read from the device. |\n"
    assert docs.labels_in_page(page) == {"opsmon_disk_read_bytes_total": ["device"]}
    assert page in docs.metrics_reference({"opsmon-exporter": exposition}, docs.labels_in_page(page))
    assert "| counter |  |" in docs.metrics_reference({"opsmon-exporter": exposition})


def test_the_metrics_command_names_a_service_it_cannot_scrape(capsys):
    closed = f"http://127.0.0.1:{free_port()}"
    assert docs.main(["metrics", "--exporter", closed, "--backup", closed]) == 1
    assert f"cannot scrape opsmon-exporter at {closed}: " in capsys.readouterr().err

# ---- what a newcomer reads --------------------------------------------------------------------

def test_the_readme_is_short():
    lines = (REPO / "README.md").read_text().count("\n")
    assert lines < 250, f"README.md has {lines} lines: move the details to docs/"


def test_no_tracked_file_cites_a_file_outside_the_repository():
    # The name is built here so that this file does not cite it either.
    outside = "CONTRACT" + ".md"
    citing = [str(path.relative_to(REPO)) for path in tracked_files() if outside in text_of(path)]
    assert citing == []


def test_every_link_of_the_docs_leads_to_a_file_of_the_repository():
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    broken = [f"{page.relative_to(REPO)}: {target}" for page in pages
              for target in MARKDOWN_LINK.findall(page.read_text())
              if "://" not in target and not (page.parent / target).exists()]
    assert broken == []


def test_no_name_from_the_history_of_the_work():
    # "issue" and a number, as a name for code or text a newcomer cannot look up; built so as not to match itself.
    history = re.compile("iss" + r"ue[ -]?[0-9]+", re.IGNORECASE)
    named = [f"{path.relative_to(REPO)}: {match.group(0)}" for path in tracked_files()
             for match in history.finditer(text_of(path) + str(path.relative_to(REPO)))]
    assert named == []
