"""The one reader of the alerts' thresholds (opsmon/thresholds.py), on rule files of the tests' own and on the kit's."""

from __future__ import annotations

import re
import textwrap

import pytest

from opsmon.thresholds import Limit, Rules, shipped
from tests.conftest import REPO

RULES = """\
    groups:
      - name: g
        rules:
          - alert: Stale
            expr: |
              (time() - max_over_time(t{tier="daily"}[5m])) > 26 * 3600
              or (time() - max_over_time(t{tier="weekly"}[5m])) > 8 * 86400
            labels: {severity: warning}
          - alert: Stale
            expr: (time() - t{tier="daily"}) > 50 * 3600
            labels: {severity: critical}
          - alert: Shrunk
            expr: |
              size{tier="daily"}
              < ignoring (tier) (0.5 * size{tier="weekly"})
            labels: {severity: warning}
          - alert: WalLarge
            expr: |
              wal > 2 * db
              and wal > 64 * 1024 * 1024
            labels: {severity: warning}
          - alert: Failing
            expr: failure > success
            labels: {severity: critical}
"""


@pytest.fixture
def rules(tmp_path) -> Rules:
    (tmp_path / "x.rules.yml").write_text(textwrap.dedent(RULES))
    return Rules(tmp_path)


def test_a_threshold_is_read_by_alert_severity_and_the_line_of_its_tier(rules):
    assert rules.limit("Stale", "warning", where='tier="weekly"') == Limit("Stale", "warning", ">", 8 * 86400)
    assert rules.limit("Stale", "critical", where='tier="daily"') == Limit("Stale", "critical", ">", 50 * 3600)
    assert rules.limit("Stale", "critical").color == "red"


def test_a_share_of_another_series_is_read_apart_from_a_plain_number(rules):
    assert rules.factor("Shrunk", "size") == Limit("Shrunk", "warning", "<", 0.5)
    assert rules.factor("WalLarge", "db") == Limit("WalLarge", "warning", ">", 2)
    assert rules.limit("WalLarge") == Limit("WalLarge", "warning", ">", 64 * 1024 * 1024)


def test_an_alert_on_a_fact_has_its_severity_and_no_number(rules):
    assert rules.fact("Failing") == Limit("Failing", "critical")
    with pytest.raises(LookupError, match="no comparison with a number in Failing"):
        rules.limit("Failing")


def test_a_name_that_is_missing_or_ambiguous_is_an_error_naming_it(rules):
    with pytest.raises(LookupError, match="0 alert rules named Missing"):
        rules.fact("Missing")
    with pytest.raises(LookupError, match="2 alert rules named Stale"):
        rules.fact("Stale")
    with pytest.raises(LookupError, match="WalLarge compares with no multiple of wal"):
        rules.factor("WalLarge", "wal")


def test_an_install_without_the_rules_is_named_with_the_folder_it_looked_in(tmp_path):
    """Installed without the kit's data files: where it looked, and what to do, rather than a traceback."""
    with pytest.raises(FileNotFoundError, match=rf"no alert rules .* in {re.escape(str(tmp_path))}: the kit is "
                                                "incomplete"):
        Rules(tmp_path)


def test_the_kit_s_rules_are_the_clone_s_wherever_the_process_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Rules().directories == (REPO / "prometheus" / "rules",)
    assert Rules().alert("OpsmonBackupStale", "critical")["labels"]["severity"] == "critical"


def test_a_drill_counts_for_the_recovery_point_within_the_drill_staleness_window():
    """OpsmonBackupRpoMissed counts only the locations OpsmonRestoreDrillStale does not call stale."""
    kit = shipped()
    assert kit.limit("OpsmonBackupRpoMissed").value == kit.limit("OpsmonRestoreDrillStale").value
