"""The alert rules' numbers, read from prometheus/rules/ and demo/rules/, so a panel turns where its alert fires."""

from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

REPOSITORY = Path(__file__).resolve().parents[2]
# The kit's rules, and the demo's, which the demo's board reads its numbers from.
RULES = (REPOSITORY / "prometheus" / "rules", REPOSITORY / "demo" / "rules")
SEVERITY_COLORS = {"critical": "red", "warning": "orange", "info": "blue"}

# A comparison with a number: `> 26 * 3600`, `< 0.10`, `> (14.4 * 0.01)`, `== 0`; not `> 2 * (series offset 1w)`.
_ARITHMETIC = r"\d+(?:\.\d+)?(?:\s*[*/+-]\s*\d+(?:\.\d+)?)*"
_COMPARISON = re.compile(
    rf"(?P<op>>=|<=|==|!=|>|<)\s*(?P<number>\(\s*{_ARITHMETIC}\s*\)|{_ARITHMETIC})(?![\d.]|\s*[*/+-]\s*[\w(])")
_OPERATORS = {ast.Mult: operator.mul, ast.Div: operator.truediv, ast.Add: operator.add, ast.Sub: operator.sub}


@dataclass(frozen=True)
class Limit:
    """Where one alert fires: `op value`, and how loud (its severity)."""

    alert: str
    severity: str
    op: str
    value: float

    @property
    def color(self) -> str:
        return SEVERITY_COLORS[self.severity]


def _arithmetic(text: str) -> float:
    def evaluate(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](evaluate(node.left), evaluate(node.right))
        raise ValueError(f"not a plain number: {text!r}")

    return round(evaluate(ast.parse(text.strip(), mode="eval").body), 9)


@lru_cache(maxsize=1)
def _rules() -> tuple[dict, ...]:
    found = []
    for path in sorted(path for folder in RULES for path in folder.glob("*.rules.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            found.extend(group["rules"])
    return tuple(found)


def alert(name: str, severity: str | None = None) -> dict:
    """The one alerting rule with this name (and severity, where the name has two)."""
    matches = [r for r in _rules() if r.get("alert") == name
               and (severity is None or r["labels"]["severity"] == severity)]
    if len(matches) != 1:
        raise LookupError(f"{len(matches)} alert rules named {name} (severity {severity}) in {RULES}")
    return matches[0]


def record(name: str) -> str:
    """The expression of a recording rule."""
    for rule in _rules():
        if rule.get("record") == name:
            return rule["expr"]
    raise LookupError(f"no recording rule {name} in {RULES}")


def limit(name: str, severity: str | None = None, where: str | None = None) -> Limit:
    """The number `name` compares with; `where` picks the line of the expression that holds it."""
    rule = alert(name, severity)
    lines = [line for line in rule["expr"].splitlines() if where is None or where in line]
    found = [m for line in lines for m in _COMPARISON.finditer(line)]
    if not found:
        raise LookupError(f"no comparison with a number in {name} ({where or 'any line'})")
    first = found[0]
    return Limit(name, rule["labels"]["severity"], first["op"], _arithmetic(first["number"]))


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
    for rule in _rules():
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
    names = [r["alert"] for r in _rules() if "alert" in r and r["expr"].strip() == "vector(1)"]
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
    for rule in _rules():
        name = rule.get("alert", "")
        if not name.endswith("Absent"):
            continue
        match = (re.fullmatch(r"\s*absent\((.+)\)\s*", rule["expr"])
                 or re.search(r"\bunless on \(host\)\s+([a-zA-Z_:][\w:]*(?:\{[^}]*\})?)", rule["expr"]))
        if not match:  # loud: the overview's "Metrics reporting" would silently lose the series
            raise LookupError(f"{name}: neither absent(selector) nor `unless on (host) selector` to read")
        found.append((name, match.group(1).strip()))
    return sorted(found)
