"""The business board `opsmon render` writes: a panel per business metric of the config, its help as the description."""

from __future__ import annotations

import json

from opsmon.config import BusinessQueryConfig

UID, TITLE, TAG = "opsmon-business", "opsmon / Business", "opsmon"
# The provisioned datasources' fixed uids, which the boards name: file provisioning never fills in ${DS_...}.
PROMETHEUS_UID, LONG_TERM_UID, ALERTMANAGER_UID = "opsmon-prometheus", "opsmon-victoriametrics", "opsmon-alertmanager"
# The board's datasource variable, defaulting to the provisioned Prometheus (render.grafana_datasources).
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
HOST = 'host=~"$host"'
PER_HOUR = 3600
WIDTH, HEIGHT = 12, 8


def _variables() -> list[dict]:
    """The datasource and host variables every opsmon board offers (grafana/boards/panels.py makes the others')."""
    datasource = {"type": "datasource", "name": "datasource", "label": "Data source", "query": "prometheus",
                  "current": {"selected": True, "text": "Prometheus", "value": PROMETHEUS_UID},
                  "includeAll": False, "multi": False, "skipUrlSync": False}
    host = {"type": "query", "name": "host", "label": "Host", "datasource": DATASOURCE,
            "query": {"query": 'label_values(up{job="opsmon-exporter"}, host)', "refId": "v"},
            "current": {"selected": True, "text": "All", "value": "$__all"}, "includeAll": True, "allValue": ".*",
            "multi": True, "refresh": 2, "sort": 1, "skipUrlSync": False}
    return [datasource, host]


def _grouping(metric: BusinessQueryConfig) -> str:
    return ", ".join(["host", *metric.labels])


def _legend(metric: BusinessQueryConfig) -> str:
    return " ".join("{{" + label + "}}" for label in ["host", *metric.labels])


def _gauge(metric: BusinessQueryConfig) -> tuple[str, str, str]:
    """(expression, unit, how it is read): a state, as the exporter's SQL last read it."""
    expr = f"sum by ({_grouping(metric)}) ({metric.name}{{{HOST}}})"
    return expr, "short", f"Read with SQL every {metric.refresh_seconds:g} s, per host"


def _counter(metric: BusinessQueryConfig) -> tuple[str, str, str]:
    """(expression, unit, how it is read): events per hour, from the counter the app increments."""
    expr = f"sum by ({_grouping(metric)}) (rate({metric.series}{{{HOST}}}[$__rate_interval])) * {PER_HOUR}"
    return expr, "suffix:/h", "Counted by the app where each happens; per hour, per host"


def _panel(number: int, metric: BusinessQueryConfig) -> dict:
    expr, unit, reading = (_counter if metric.type == "counter" else _gauge)(metric)
    return {
        "id": number + 1, "type": "timeseries", "title": metric.name, "datasource": DATASOURCE,
        "description": f"{metric.help} ({reading}.)",
        "gridPos": {"h": HEIGHT, "w": WIDTH, "x": WIDTH * (number % 2), "y": HEIGHT * (number // 2)},
        "fieldConfig": {"defaults": {"unit": unit, "min": 0,
                                     "custom": {"fillOpacity": 10, "lineWidth": 1, "showPoints": "never"}},
                        "overrides": []},
        "options": {"legend": {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
        "targets": [{"datasource": DATASOURCE, "expr": expr, "legendFormat": _legend(metric), "range": True,
                     "instant": False, "refId": "A"}],
    }


def _nothing_configured() -> dict:
    return {"id": 1, "type": "text", "title": "No business metrics",
            "description": "The config's business: section lists none.",
            "gridPos": {"h": 4, "w": 24, "x": 0, "y": 0},
            "options": {"mode": "markdown", "content": (
                "No business metrics in the config. Add gauges read with SQL (`query:`) and the counters your "
                "app increments (`type: counter`) under `business:`, each with its `help`, and render again.")}}


def business_board(metrics: list[BusinessQueryConfig]) -> str:
    """The board as JSON Grafana provisions: keys sorted, two-space indents, a final newline, as the kit's boards."""
    panels = [_panel(number, metric) for number, metric in enumerate(metrics)] or [_nothing_configured()]
    board = {
        "uid": UID, "title": TITLE, "tags": [TAG], "editable": False, "graphTooltip": 1, "schemaVersion": 39,
        "description": "The app's business figures: a panel per business metric of the config, with its help.",
        "time": {"from": "now-6h", "to": "now"}, "timezone": "browser", "refresh": "30s",
        "links": [{"title": "opsmon", "type": "dashboards", "tags": [TAG], "asDropdown": False, "keepTime": True,
                   "includeVars": True, "icon": "external link", "targetBlank": False, "tooltip": ""}],
        "templating": {"list": _variables()},
        "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                                  "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                                  "name": "Annotations & Alerts", "type": "dashboard"}]},
        "panels": panels,
    }
    return json.dumps(board, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
