"""The alerts' thresholds, read from the kit's prometheus/rules: one source for the status report and the boards."""

from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from opsmon.render import INCOMPLETE, RULES

# The colour a board shows an alert's severity in, so a panel turns the colour of the alert that fires there.
SEVERITY_COLORS = {"critical": "red", "warning": "orange", "info": "blue"}

# A comparison with a number: `> 26 * 3600`, `< 0.10`, `> (14.4 * 0.01)`, `== 0`; not `> 2 * (series offset 1w)`.
_ARITHMETIC = r"\d+(?:\.\d+)?(?:\s*[*/+-]\s*\d+(?:\.\d+)?)*"
_COMPARISON = re.compile(
    rf"(?P<op>>=|<=|==|!=|>|<)\s*(?P<number>\(\s*{_ARITHMETIC}\s*\)|{_ARITHMETIC})(?![\d.]|\s*[*/+-]\s*[\w(])")
_OPERATORS = {ast.Mult: operator.mul, ast.Div: operator.truediv, ast.Add: operator.add, ast.Sub: operator.sub}


@dataclass(frozen=True)
class Limit:
    """Where one alert fires: `op value`, and how loud (its severity). An alert on a fact or on a setting
    (`a > b` of two series) has no number: op and value are None."""

    alert: str
    severity: str
    op: str | None = None
    value: float | None = None

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


class Rules:
    """The alerting and recording rules of folders of *.rules.yml (the kit's, and an app's own)."""

    def __init__(self, *directories: Path):
        self.directories = tuple(dict.fromkeys(Path(d) for d in directories or (RULES,)))
        self.directory = ", ".join(map(str, self.directories))  # for messages
        paths = sorted(path for directory in self.directories for path in directory.glob("*.rules.yml"))
        if not paths:  # installed without the kit's data files: say so, rather than mark nothing
            raise FileNotFoundError(f"no alert rules (*.rules.yml) in {self.directory}: {INCOMPLETE}")
        self.all = tuple(rule for path in paths for group in yaml.safe_load(path.read_text())["groups"]
                         for rule in group["rules"])

    def alert(self, name: str, severity: str | None = None) -> dict:
        """The one alerting rule with this name (and severity, where the name has two)."""
        matches = [r for r in self.all if r.get("alert") == name
                   and (severity is None or r["labels"]["severity"] == severity)]
        if len(matches) != 1:
            raise LookupError(f"{len(matches)} alert rules named {name} (severity {severity}) in {self.directory}")
        return matches[0]

    def record(self, name: str) -> str:
        """The expression of a recording rule."""
        for rule in self.all:
            if rule.get("record") == name:
                return rule["expr"]
        raise LookupError(f"no recording rule {name} in {self.directory}")

    def limit(self, name: str, severity: str | None = None, where: str | None = None) -> Limit:
        """The number `name` compares with; `where` picks the line of the expression that holds it."""
        rule = self.alert(name, severity)
        lines = [line for line in rule["expr"].splitlines() if where is None or where in line]
        found = [m for line in lines for m in _COMPARISON.finditer(line)]
        if not found:
            raise LookupError(f"no comparison with a number in {name} ({where or 'any line'})")
        first = found[0]
        return Limit(name, rule["labels"]["severity"], first["op"], _arithmetic(first["number"]))

    def factor(self, name: str, series: str) -> Limit:
        """The number a series is multiplied by in `name`: 0.5 in `a < (0.5 * series)`, a share of another series."""
        rule = self.alert(name)
        match = re.search(rf"(?P<op>>=|<=|>|<)[^<>=]*?(?P<number>{_ARITHMETIC})\s*\*\s*{re.escape(series)}\b",
                          rule["expr"])
        if not match:
            raise LookupError(f"{name} compares with no multiple of {series}")
        return Limit(name, rule["labels"]["severity"], match["op"], _arithmetic(match["number"]))

    def fact(self, name: str) -> Limit:
        """An alert that fires on a fact, or compares with a setting: its severity, with no number."""
        return Limit(name, self.alert(name)["labels"]["severity"])


@lru_cache(maxsize=1)
def shipped() -> Rules:
    """The kit's own rules, read once."""
    return Rules(RULES)
