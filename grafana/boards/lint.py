"""What a reviewer checks on a dashboard, as code: run on the JSON Grafana provisions, not on the generator.

Each rule returns Problems naming the board, the panel and the rule, so a test can say which rule caught what.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from grafana.boards import rules
from opsmon.boards import LONG_TERM_UID, PROMETHEUS_UID

# The kit's boards' uids never change: alert rules' dashboard_url, bookmarks and links between boards name them.
# A board of one's own (the demo's) keeps its own uid, and the overview's Hosts table does not lead to it.
UIDS = {"overview": "opsmon-overview", "system": "opsmon-system", "application": "opsmon-application",
        "logs": "opsmon-logs", "business": "opsmon-business", "backups": "opsmon-backups",
        "external-services": "opsmon-external", "exporter": "opsmon-exporter"}
# The scrape jobs of the monitoring itself: no host label (prometheus/prometheus.yml), so their series are read
# whichever hosts are selected. Every other series belongs to a host and is filtered by the board's `host`.
HOSTLESS_JOBS = ("prometheus", "alertmanager")
# Series about the monitoring itself, whatever their job: Prometheus's alerts and Alertmanager's own metrics.
HOSTLESS_SERIES = re.compile(r"^(ALERTS|ALERTS_FOR_STATE|alertmanager_\w+|prometheus_\w+)$")
HOST_MATCHER = re.compile(r'(?<![\w])host\s*=~\s*"\$host"')
# Every board's two variables: the datasource (Prometheus, or the long-term store for long ranges) and the hosts.
DATASOURCE = "datasource"
DATASOURCE_REF = f"${{{DATASOURCE}}}"
HOSTS_QUERY = 'label_values(up{job="opsmon-exporter"}, host)'
HOST_VARIABLE = {"type": "query", "multi": True, "includeAll": True, "allValue": ".*", "refresh": 2}
DATASOURCE_VARIABLE = {"type": "datasource", "query": "prometheus"}
# The provisioned long-term store the datasource variable offers (grafana/provisioning/datasources/).
LONG_TERM = {"name": "VictoriaMetrics", "uid": LONG_TERM_UID, "type": "prometheus", "isDefault": False,
             "editable": False}
# The overview's table of hosts, whose rows lead to every other board for their host.
HOSTS_TABLE = "Hosts"
ROW_LINK_PARTS = ("var-host=${__data.fields.host}", "${__url_time_range}")
# The variables a board must offer, beyond those its expressions use.
REQUIRED_VARIABLES = {"application": {"job", "instance", "handler"}}
SINGLE_VALUE = {"stat", "gauge", "bargauge"}
WITH_THRESHOLDS = SINGLE_VALUE | {"table"}
# Grafana's thresholds when a panel sets none: green, then red from 80, whatever the unit.
GRAFANA_DEFAULT_STEPS = [(None, "green"), (80, "red")]
GRANULAR_RANGES = {"$__rate_interval", "$__interval", "$__range"}
TIME_UNITS = re.compile(r"^(s|ms|m|h|d|dtdurations|dtdurationms|dateTime\w*|time:.*)$")
# A series whose value is a state: 1 up/ok, 0 down/failed.
STATE_SERIES = re.compile(r"^(up|\w+_up|\w+_success|\w+_successful|\w+_satisfied|\w+_running)$")
BARE_SERIES = re.compile(r"^\s*(?:(?:max|min)\s*(?:by\s*\([^)]*\)\s*)?\(\s*)?([a-zA-Z_:][\w:]*)"
                         r"\s*(?:\{[^}]*\})?\s*\)?\s*$")
RATIO_AGGREGATED = re.compile(r"\b(sum|avg)\b\s*(?:(?:by|without)\s*\([^)]*\)\s*)?\(\s*[\w:]*ratio[\w:]*\s*"
                              r"(?:\{[^}]*\})?\s*\)")
BURN_RATE = re.compile(r"errors:ratio_rate\w*\s*(?:\{[^}]*\})?\s*/\s*\d")
BAD_COUNT = re.compile(r"\bcount\s*\(.*==\s*0\s*\)|_failures\b|_violations\b")
GREENS = {"green", "semi-dark-green", "dark-green", "light-green", "super-light-green"}
REDS = {"red", "semi-dark-red", "dark-red", "light-red", "super-light-red"}


@dataclass(frozen=True)
class Problem:
    board: str
    panel: str
    rule: str
    message: str

    def __str__(self) -> str:
        where = f"{self.board}: {self.panel}" if self.panel else self.board
        return f"{where}: [{self.rule}] {self.message}"


def panels(board: Mapping) -> Iterator[Mapping]:
    for panel in board.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def expressions(panel: Mapping) -> list[str]:
    return [t.get("expr", "") for t in panel.get("targets", [])]


def _unquoted(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def _steps(config: Mapping) -> list[tuple[float | None, str]] | None:
    thresholds = config.get("thresholds")
    if not thresholds or not thresholds.get("steps"):
        return None
    return [(step.get("value"), step.get("color")) for step in thresholds["steps"]]


def color_at(steps: list[tuple[float | None, str]] | None, value: float) -> str:
    """The colour Grafana gives `value`: the last step at or under it (its default steps when none are set)."""
    chosen = None
    for limit, color in steps or GRAFANA_DEFAULT_STEPS:
        if limit is None or value >= limit:
            chosen = color
    return chosen or ""


def _overrides(panel: Mapping) -> list[Mapping]:
    return panel.get("fieldConfig", {}).get("overrides", [])


def _defaults(panel: Mapping) -> Mapping:
    return panel.get("fieldConfig", {}).get("defaults", {})


def _field_values(panel: Mapping, key: str) -> list:
    """A list-valued field setting (mappings, links) from the defaults and every override together."""
    found = list(_defaults(panel).get(key, []))
    for override in _overrides(panel):
        for prop in override.get("properties", []):
            if prop.get("id") == key:
                found.extend(prop.get("value") or [])
    return found


def _mappings(panel: Mapping) -> list[Mapping]:
    return _field_values(panel, "mappings")


def _mapped_values(panel: Mapping) -> set[str]:
    return {key for m in _mappings(panel) if m.get("type") == "value" for key in m.get("options", {})}


def _mapped_texts(panel: Mapping) -> set[str]:
    texts = set()
    for m in _mappings(panel):
        options = m.get("options", {})
        results = options.values() if m.get("type") == "value" else [options.get("result", {})]
        texts |= {r.get("text") for r in results if r}
    return texts


def _column_units(panel: Mapping) -> list[tuple[str, str]]:
    """(column or panel name, unit) for each value the panel shows; a table's columns after its renames."""
    defaults_unit = _defaults(panel).get("unit", "")
    if panel.get("type") != "table":
        return [(panel.get("title", ""), defaults_unit)]
    renames: dict = {}
    for transformation in panel.get("transformations", []):
        if transformation.get("id") == "organize":
            renames = transformation.get("options", {}).get("renameByName", {})
    by_name = {}
    for override in _overrides(panel):
        if override.get("matcher", {}).get("id") == "byName":
            for prop in override.get("properties", []):
                if prop.get("id") == "unit":
                    by_name[override["matcher"].get("options")] = prop.get("value")
    targets = panel.get("targets", [])
    columns = []
    for target in targets:
        name = f"Value #{target.get('refId')}" if len(targets) > 1 else "Value"
        header = renames.get(name, name)
        columns.append((header, by_name.get(header, defaults_unit)))
    return columns


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
# A name not inside a number or a duration (1w, 1e3), with its matchers, or a call when `(` follows.
_SELECTOR = re.compile(r"(?<![\w.:])(?P<name>[a-zA-Z_:][\w:]*)(?P<matchers>\s*\{[^}]*\})?(?P<call>\s*\()?"
                       r"|(?P<bare>\{[^}]*\})")
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless",
             "inf", "nan"}


def selectors(expr: str) -> list[tuple[str, str]]:
    """(series name, its matchers) of every series an expression reads: `rate(a{x="1"}[5m]) / on (x) b` gives
    [("a", '{x="1"}'), ("b", "")]."""
    strings = _STRING.findall(expr)
    # Strings out of the way first (a regex may hold brackets or braces), each by its index to put it back.
    numbers = itertools.count()
    text = _STRING.sub(lambda _: f'"#{next(numbers)}"', expr)
    text = re.sub(r"\[[^\]]*\]", "", _GROUPING.sub("", text))
    found = []
    for match in _SELECTOR.finditer(text):
        name, matchers = match["name"] or "", (match["matchers"] or match["bare"] or "").strip()
        if not match["call"] and name not in _KEYWORDS:
            found.append((name, re.sub(r'"#(\d+)"', lambda m: strings[int(m.group(1))], matchers)))
    return found


def _hostless(name: str, matchers: str) -> bool:
    """A series of the monitoring itself, which no host label narrows."""
    jobs = re.search(r'(?<![\w])job\s*=~?\s*"([^"]*)"', matchers)
    return bool(HOSTLESS_SERIES.match(name)) or bool(jobs and set(jobs.group(1).split("|")) <= set(HOSTLESS_JOBS))


def unfiltered(expr: str) -> list[str]:
    """The series of a host that an expression reads without the board's `host=~"$host"`."""
    return [name + matchers for name, matchers in selectors(expr)
            if not _hostless(name, matchers) and not HOST_MATCHER.search(matchers)]


# ---- rules on a panel ----------------------------------------------------------------------------------

def _panel_rules(panel: Mapping, heartbeat: str, burn_rates: list[float]) -> Iterator[tuple[str, str]]:
    kind = panel.get("type")
    exprs = expressions(panel)
    defaults = _defaults(panel)
    steps = _steps(defaults)
    has_words = bool(_mappings(panel))

    if not panel.get("description"):
        yield "description", "no description: a reader cannot tell what it shows or why it is coloured"
    if not exprs:
        return
    if kind != "alertlist":
        refs = [panel.get("datasource")] + [t.get("datasource") for t in panel.get("targets", [])]
        if any((ref or {}).get("uid") != DATASOURCE_REF for ref in refs):
            yield "datasource", (f"reads {sorted({str((ref or {}).get('uid')) for ref in refs})}, not the board's "
                                 f"datasource variable {DATASOURCE_REF}: no long ranges from the long-term store")
    for expr in exprs:
        missing = unfiltered(expr)
        if missing:
            yield "host", f"reads {', '.join(missing)} of every host, not host=~\"$host\", in {expr!r}"

    for column, unit in _column_units(panel):
        if not unit or (unit == "none" and not has_words):
            yield "unit", f"{column!r} has no unit (unit {unit or 'unset'!r}, no value mappings)"

    if kind in WITH_THRESHOLDS:
        if steps is None:
            yield "thresholds", "no thresholds: Grafana's default (red from 80) applies, whatever the unit"
        elif steps == GRAFANA_DEFAULT_STEPS:
            yield "thresholds", "Grafana's default thresholds (red from 80), not the alert's numbers"

    if kind in SINGLE_VALUE and any(BAD_COUNT.search(_unquoted(e)) for e in exprs):
        if color_at(steps, 1) in GREENS or color_at(steps, 0) not in GREENS:
            yield "bad-count", (f"counts things in a bad state but is {color_at(steps, 0)} at 0 and "
                                f"{color_at(steps, 1)} at 1")
    if kind in SINGLE_VALUE and any("error_budget" in e for e in exprs):
        if color_at(steps, -0.01) not in REDS:
            yield "budget", f"an overspent (negative) error budget shows {color_at(steps, -0.01)}"

    needs_states = [e for e in exprs if " bool " in f" {_unquoted(e)} " or
                    ((m := BARE_SERIES.match(e)) and STATE_SERIES.match(m.group(1)))]
    if needs_states and not {"0", "1"} <= _mapped_values(panel):
        yield "state", f"a 0/1 series ({needs_states[0]}) shows numbers, not words for 0 and 1"

    units = dict(_column_units(panel))
    shown_as_time = any(TIME_UNITS.match(u or "") for u in units.values())
    if shown_as_time and any("_timestamp_seconds" in e for e in exprs):
        if "never" not in _mapped_texts(panel) and defaults.get("noValue") != "never":
            yield "never", "a timestamp of 0 shows as 1970 (or 55 years ago), not \"never\""

    if kind == "table" and len(exprs) > 1:
        ids = {t.get("id") for t in panel.get("transformations", [])}
        if not ids & {"merge", "joinByField", "seriesToColumns", "joinByLabels"}:
            yield "merge", f"{len(exprs)} queries and no merge: the table renders as {len(exprs)} frames"

    for expr in exprs:
        text = _unquoted(expr)
        for window in re.findall(r"\[([^\]]*)\]", text):
            if window not in GRANULAR_RANGES:
                yield "window", (f"fixed range [{window}] in {expr!r}: it undersamples once the step is larger; "
                                 "use $__rate_interval (or $__range)")
        if RATIO_AGGREGATED.search(text):
            yield "ratio-aggregate", f"sums or averages ratios in {expr!r}: divide the sums instead"
        for selector in re.findall(r"\bALERTS\b(\{[^}]*\})?", expr):
            if f'alertname="{heartbeat}"' not in selector:
                yield "alerts", ("reads Prometheus's ALERTS, which knows no silences or inhibitions: read "
                                 "Alertmanager (ALERTS only to leave out the heartbeat)")

    if any(BURN_RATE.search(e) for e in exprs):
        drawn = {value for value, _ in steps or [] if value is not None}
        style = (defaults.get("custom", {}).get("thresholdsStyle") or {}).get("mode", "off")
        missing = [rate for rate in burn_rates if rate not in drawn]
        if missing or style == "off":
            yield "burn-rate", f"no reference line at burn rates {missing or burn_rates} (threshold style {style})"


# ---- rules on a board ----------------------------------------------------------------------------------

def _board_rules(name: str, board: Mapping, boards: Mapping[str, Mapping]) -> Iterator[tuple[str, str]]:
    expected = UIDS.get(name)
    if expected and board.get("uid") != expected:
        yield "uid", f"uid {board.get('uid')!r}, pinned as {expected!r}"
    if board.get("graphTooltip") not in (1, 2):
        yield "crosshair", "no shared crosshair or tooltip (graphTooltip 1 or 2)"
    reached = set()
    for link in board.get("links", []):
        if not link.get("keepTime"):
            continue
        if link.get("type") == "dashboards":
            tags = set(link.get("tags", []))
            reached |= {other for other, b in boards.items() if tags and tags <= set(b.get("tags", []))}
        for other, b in boards.items():
            if f"/d/{b.get('uid')}" in link.get("url", ""):
                reached.add(other)
    unreached = sorted(set(boards) - reached - {name})
    if unreached:
        yield "links", f"no link that keeps the time range to {', '.join(unreached)}"
    declared = {v.get("name") for v in board.get("templating", {}).get("list", [])}
    used = {m for p in panels(board) for e in expressions(p) for m in re.findall(r"\$(?!__)(\w+)", e)}
    if used - declared:
        yield "variables", f"uses undeclared variables {sorted(used - declared)}"
    if REQUIRED_VARIABLES.get(name, set()) - declared:
        yield "variables", f"no {sorted(REQUIRED_VARIABLES[name] - declared)} variable(s)"
    yield from _fleet_variable_rules(board)
    if name == "overview":
        yield from _hosts_table_rules(board, boards)


def _variables(board: Mapping) -> dict[str, Mapping]:
    return {v.get("name"): v for v in board.get("templating", {}).get("list", [])}


def _differences(variable: Mapping, expected: Mapping) -> list[str]:
    return [f"{key} {variable.get(key)!r}, not {value!r}" for key, value in expected.items()
            if variable.get(key) != value]


def _fleet_variable_rules(board: Mapping) -> Iterator[tuple[str, str]]:
    """The datasource and host variables every board offers, and every other variable narrowed to the hosts."""
    variables = _variables(board)
    source = variables.get(DATASOURCE)
    if source is None:
        yield "datasource-variable", "no datasource variable: no long ranges from the long-term store"
    else:
        wrong = _differences(source, DATASOURCE_VARIABLE)
        default = (source.get("current") or {}).get("value")
        if default != PROMETHEUS_UID:
            wrong.append(f"default {default!r}, not the provisioned Prometheus {PROMETHEUS_UID!r}")
        if wrong:
            yield "datasource-variable", "datasource variable: " + "; ".join(wrong)
    host = variables.get("host")
    if host is None:
        yield "host-variable", "no host variable: every host of the fleet summed into one board"
    else:
        wrong = _differences(host, HOST_VARIABLE)
        if (host.get("query") or {}).get("query") != HOSTS_QUERY:
            wrong.append(f"query {(host.get('query') or {}).get('query')!r}, not {HOSTS_QUERY!r}")
        if (host.get("datasource") or {}).get("uid") != DATASOURCE_REF:
            wrong.append(f"datasource {(host.get('datasource') or {}).get('uid')!r}, not {DATASOURCE_REF}")
        if wrong:
            yield "host-variable", "host variable: " + "; ".join(wrong)
    for other, variable in variables.items():
        query = variable.get("query")
        if other != "host" and variable.get("type") == "query" and isinstance(query, Mapping):
            missing = unfiltered(re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", query.get("query", "")))
            if missing:
                yield "host", f"variable {other} lists the values of every host: {', '.join(missing)}"


def _row_links(panel: Mapping) -> list[str]:
    """The URLs of a table's data links, on all its cells or on some columns."""
    return [link.get("url", "") for link in _field_values(panel, "links")]


def _hosts_table_rules(board: Mapping, boards: Mapping[str, Mapping]) -> Iterator[tuple[str, str]]:
    """The overview's Hosts table, a row per host, each row leading to every other board for its host."""
    table = next((p for p in panels(board) if p.get("type") == "table" and p.get("title") == HOSTS_TABLE), None)
    if table is None:
        yield "hosts-table", f"no {HOSTS_TABLE!r} table: no one place that says which host is wrong"
        return
    urls = _row_links(table)
    others = sorted(uid for other, uid in UIDS.items() if other != "overview" and other in boards)
    unlinked = [uid for uid in others if not any(f"/d/{uid}?" in url and all(part in url for part in ROW_LINK_PARTS)
                                                 for url in urls)]
    if unlinked:
        yield "hosts-table", (f"no row link keeping the host and the time range ({', '.join(ROW_LINK_PARTS)}) "
                              f"to {', '.join(unlinked)}")
    if not all(re.search(r"\bby\s*\(\s*host\s*\)", e) for e in expressions(table)):
        yield "hosts-table", "a column not aggregated `by (host)`: the table has no row per host"


def lint_provisioning(document: Mapping) -> list[Problem]:
    """The provisioned datasources: the Prometheus the boards default to, and the long-term store they offer."""
    sources = {source.get("uid"): source for source in document.get("datasources", [])}
    where = "provisioning/datasources"
    problems = []
    if (sources.get(PROMETHEUS_UID) or {}).get("type") != "prometheus":
        problems.append(Problem(where, "", "datasources", f"no Prometheus datasource with uid {PROMETHEUS_UID!r}"))
    store = sources.get(LONG_TERM_UID)
    if store is None:
        problems.append(Problem(where, "", "datasources", f"no long-term store with uid {LONG_TERM_UID!r}"))
    else:
        wrong = [f"{key} {store.get(key)!r}, not {value!r}" for key, value in LONG_TERM.items()
                 if store.get(key, False if key == "isDefault" else None) != value]
        if wrong:
            problems.append(Problem(where, LONG_TERM["name"], "datasources", "; ".join(wrong)))
    return problems


def lint(boards: Mapping[str, Mapping], heartbeat: str | None = None,
         burn_rates: list[float] | None = None) -> list[Problem]:
    """Every problem on every board; `boards` maps file name (without .json) to the dashboard."""
    heartbeat = heartbeat or rules.heartbeat()
    burn_rates = sorted(burn_rates or rules.burn_rates())
    problems = []
    for name, board in boards.items():
        problems += [Problem(name, "", rule, message) for rule, message in _board_rules(name, board, boards)]
        for panel in panels(board):
            problems += [Problem(name, panel.get("title", ""), rule, message)
                         for rule, message in _panel_rules(panel, heartbeat, burn_rates)]
    return problems
