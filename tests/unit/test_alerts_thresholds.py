"""Thresholds with one source: the alerts agree with /health, the scrape timeout and the histogram's buckets."""

from __future__ import annotations

import re

import pytest
import yaml

from opsmon.instrument.metrics import BUCKETS
from opsmon.config import HealthConfig, load_config
from tests.conftest import REPO

RULES = [rule for path in sorted((REPO / "prometheus" / "rules").glob("*.rules.yml"))
         for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def threshold(alertname: str, severity: str) -> float:
    rule = next(r for r in RULES if r.get("alert") == alertname and r["labels"]["severity"] == severity)
    return float(re.search(r"[<>]=? *([0-9.]+)", rule["expr"]).group(1))


@pytest.mark.parametrize("alertname, check", [("OpsmonDiskSpaceLow", "disk_free_ratio"),
                                              ("OpsmonMemoryLow", "memory_available_ratio")])
def test_the_alerts_and_health_share_their_thresholds(alertname, check):
    """/health says degraded exactly when the warning fires, down when the critical one does."""
    configs = [load_config(REPO / name).exporter.health for name in ("opsmon.yml", "opsmon.compose.yml")]
    for health in (*configs, HealthConfig()):
        limits = getattr(health, check)
        assert (threshold(alertname, "warning"), threshold(alertname, "critical")) == (limits.warning, limits.critical)


def test_the_slow_scrape_alert_sits_at_80_percent_of_the_scrape_timeout():
    timeout = yaml.safe_load((REPO / "prometheus" / "prometheus.yml").read_text())["global"]["scrape_timeout"]
    seconds = float(timeout.removesuffix("s"))
    assert threshold("OpsmonScrapeSlow", "warning") == 0.8 * seconds
    assert load_config(REPO / "opsmon.yml").exporter.scrape_timeout_seconds == seconds


def test_latency_thresholds_sit_on_bucket_boundaries():
    boundaries = {f"{bound:g}" for bound in BUCKETS} | {"+Inf"}
    used = {le for rule in RULES for le in re.findall(r'le="([^"]+)"', rule["expr"])}
    assert used and used <= boundaries, used - boundaries
    latency = next(r for r in RULES if r.get("alert") == "OpsmonLatencyHigh")
    assert "histogram_quantile" not in latency["expr"]  # a quantile would interpolate inside a bucket
