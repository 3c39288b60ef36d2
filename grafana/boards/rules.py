"""The alert rules' numbers as the boards use them, from opsmon.thresholds: a panel turns where its alert fires."""

from __future__ import annotations

import re

from functools import lru_cache
from pathlib import Path

from opsmon import thresholds
from opsmon.thresholds import SEVERITY_COLORS, Limit, Rules

__all__ = ["SEVERITY_COLORS", "Limit", "absences", "alert", "bucket", "burn_rates", "color", "error_objective",
           "heartbeat", "limit", "record"]

# The demo's rules, which the demo's board reads its numbers from, beside the kit's.
DEMO_RULES = Path(__file__).resolve().parents[2] / "demo" / "rules"


@lru_cache(maxsize=1)
def shipped() -> Rules:
    """The kit's rules and the demo's, read once."""
    return Rules(thresholds.RULES, DEMO_RULES)


def alert(name: str, severity: str | None = None) -> dict:
    """The one alerting rule with this name (and severity, where the name has two)."""
    return shipped().alert(name, severity)


def record(name: str) -> str:
    """The expression of a recording rule."""
    return shipped().record(name)


def limit(name: str, severity: str | None = None, where: str | None = None) -> Limit:
    """The number `name` compares with; `where` picks the line of the expression that holds it."""
    return shipped().limit(name, severity, where)


def error_objective() -> float:
    """The SLO's error ratio (0.01 for "below 1 %"), from the error-budget recording rule."""
    match = re.search(r"/\s*(\d+(?:\.\d+)?)\s*$", record("job:app_error_budget:remaining_ratio").strip())
    if not match:
        raise LookupError("job:app_error_budget:remaining_ratio does not divide by the objective")
    return float(match.group(1))


def burn_rates() -> dict[float, str]:
    """Each burn rate the SLO alerts fire at (14.4, 6, 3, 1), with the severity of its alert."""
    objective = error_objective()
    rates: dict[float, str] = {}
    for rule in shipped().all:
        if rule.get("alert", "").startswith("OpsmonErrorBudgetBurn"):
            for factor, ratio in re.findall(r"\(\s*(\d+(?:\.\d+)?)\s*\*\s*(\d+(?:\.\d+)?)\s*\)", rule["expr"]):
                if float(ratio) != objective:
                    raise ValueError(f"{rule['alert']} burns against {ratio}, the budget rule against {objective}")
                rates[float(factor)] = rule["labels"]["severity"]
    if not rates:
        raise LookupError("no burn-rate alerts (OpsmonErrorBudgetBurn*) found")
    return dict(sorted(rates.items()))


def bucket(name: str) -> float:
    """The histogram bucket boundary (`le`) an alert counts requests above, e.g. 2.5 for "slower than 2.5 s"."""
    bounds = [b for b in re.findall(r'le="([^"]+)"', alert(name)["expr"]) if b != "+Inf"]
    if len(set(bounds)) != 1:
        raise LookupError(f"{name} does not compare with one bucket boundary: {bounds}")
    return float(bounds[0])


def heartbeat() -> str:
    """The alert that always fires (`vector(1)`), so its silence says the pipeline is broken: no one acts on it."""
    names = [r["alert"] for r in shipped().all if "alert" in r and r["expr"].strip() == "vector(1)"]
    if len(names) != 1:
        raise LookupError(f"expected one always-firing heartbeat alert, found {names}")
    return names[0]


def color(name: str, severity: str | None = None) -> str:
    """The colour of an alert's severity, for a state panel whose bad state is that alert."""
    return SEVERITY_COLORS[alert(name, severity)["labels"]["severity"]]


def absences() -> list[tuple[str, str]]:
    """(alert, selector) of each alert on a series gone missing (named ...Absent), the blind spots: the series in
    `absent(selector)`, or in `... unless on (host) selector` where the alert names the host that lost it."""
    found = []
    for rule in shipped().all:
        name = rule.get("alert", "")
        if not name.endswith("Absent"):
            continue
        match = (re.fullmatch(r"\s*absent\((.+)\)\s*", rule["expr"])
                 or re.search(r"\bunless on \(host\)\s+([a-zA-Z_:][\w:]*(?:\{[^}]*\})?)", rule["expr"]))
        if not match:  # loud: the overview's "Metrics reporting" would silently lose the series
            raise LookupError(f"{name}: neither absent(selector) nor `unless on (host) selector` to read")
        found.append((name, match.group(1).strip()))
    return sorted(found)
