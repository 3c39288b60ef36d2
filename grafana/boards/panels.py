"""The panels that repeat, built with grafana-foundation-sdk: a stat with thresholds, a 0/1 state, an age, a graph."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from grafana_foundation_sdk.builders import bargauge, dashboard, heatmap, prometheus, statetimeline, table, timeseries
from grafana_foundation_sdk.builders import stat as stats
from grafana_foundation_sdk.builders.common import (GraphThresholdsStyleConfig, ReduceDataOptions, StackingConfig,
                                                     TableSortByFieldState, VizLegendOptions, VizTooltipOptions)
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from grafana.boards.lint import DATASOURCE, DATASOURCE_REF, PROMETHEUS_UID
from opsmon.thresholds import Limit

# Every Prometheus query reads the board's `datasource` variable, so one board shows Prometheus's 35 days or the
# long-term store's 13 months; the variable, a dashboard's own setting, is what Grafana fills in (not __inputs),
# and its default is the provisioned Prometheus's fixed uid.
PROMETHEUS = model.DataSourceRef(type_val="prometheus", uid=DATASOURCE_REF)
# The datasources' names, which Grafana's alerting pages and its alert list take instead of a uid.
PROMETHEUS_NAME, ALERTMANAGER = "Prometheus", "Alertmanager"
TAG = "opsmon"

# Units: Grafana's ids, and custom ones ("suffix:...") where Grafana has none for what is counted.
SECONDS, BYTES, BYTES_PER_SECOND, RATIO, COUNT = "s", "bytes", "Bps", "percentunit", "short"
REQUESTS_PER_SECOND, CELSIUS, WATTS = "reqps", "celsius", "watt"
CORES, LINES_PER_SECOND, ERRORS_PER_SECOND = "suffix:cores", "suffix:lines/s", "suffix:errors/s"
BURN = "suffix:×"
TIME_AGO, TIME = "dateTimeFromNow", "dateTimeAsIso"
# A state shows words (value mappings); its unit is the word.
STATE = "none"

NEVER = -1  # what since() gives for a timestamp of 0, "never", mapped to the word


def since(timestamp: str, now: str = "time()", on: str = "") -> str:
    """Seconds from `timestamp` to `now`, or -1 where the timestamp is 0 (never), which reads "never", not 1970."""
    matching = f" on ({on})" if on else ""
    return f"{now} -{matching} ({timestamp} > 0) or ({timestamp} == 0) - 1"


# ---- thresholds and mappings ---------------------------------------------------------------------------

def steps(base: str, *pairs: tuple[float, str]) -> dashboard.ThresholdsConfig:
    return dashboard.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(
        [model.Threshold(value=None, color=base)] + [model.Threshold(value=v, color=c) for v, c in pairs])


def neutral() -> dashboard.ThresholdsConfig:
    """For a number no alert watches: one colour, no good or bad (rather than Grafana's red from 80)."""
    return steps("text")


def above(*limits: Limit, scale: float = 1.0, base: str = "green") -> dashboard.ThresholdsConfig:
    """Coloured from where each alert fires: `value > limit` (or `1 - value < limit` with scale -1)."""
    pairs = sorted(((_scaled(lim.value, scale), lim.color) for lim in limits), key=lambda pair: pair[0])
    return steps(base, *pairs)


def below(*limits: Limit, good: str = "green") -> dashboard.ThresholdsConfig:
    """For `value < limit` alerts: the most severe colour at the bottom, green from the mildest limit up."""
    ordered = sorted(limits, key=lambda lim: lim.value)
    pairs = [(ordered[i].value, ordered[i + 1].color) for i in range(len(ordered) - 1)] + [(ordered[-1].value, good)]
    return steps(ordered[0].color, *pairs)


def any_is_bad(limit: Limit) -> dashboard.ThresholdsConfig:
    """For a count of things in the alert's bad state (down, failing, violated): coloured from 1."""
    return steps("green", (1, limit.color))


def _scaled(value: float, scale: float) -> float:
    # scale -1 turns "available below 10 %" into "used above 90 %"
    return round(1 - value, 9) if scale == -1 else round(value * scale, 9)


def words(zero: str, one: str, zero_color: str = "red", one_color: str = "green") -> model.ValueMap:
    return model.ValueMap(options={"0": model.ValueMappingResult(text=zero, color=zero_color, index=0),
                                   "1": model.ValueMappingResult(text=one, color=one_color, index=1)})


def never(value: int = NEVER, color: str = "red") -> model.ValueMap:
    return model.ValueMap(options={str(value): model.ValueMappingResult(text="never", color=color, index=0)})


# ---- queries -------------------------------------------------------------------------------------------

REFS = "ABCDEFGHIJ"


def query(expr: str, legend: str = "", *, instant: bool = False, table_format: bool = False) -> prometheus.Dataquery:
    """A Prometheus query: a range query for graphs, an instant one for a value now (stats, tables)."""
    target = prometheus.Dataquery().expr(expr).legend_format(legend).datasource(PROMETHEUS)
    target = target.instant() if instant else target.range()
    return target.format(PromQueryFormat.TABLE) if table_format else target


def _targets(panel, targets: Sequence[prometheus.Dataquery]):
    return panel.targets([t.ref_id(REFS[i]) for i, t in enumerate(targets)])


def link(title: str, uid: str) -> dashboard.DashboardLink:
    """A panel's link to another board, keeping the time range."""
    return dashboard.DashboardLink(title).type(model.DashboardLinkType.LINK).url(
        f"/d/{uid}?${{__url_time_range}}").keep_time(True)


def host_link(title: str, uid: str) -> dashboard.DashboardLink:
    """A table row's link to another board for that row's host, keeping the time range and the datasource."""
    return dashboard.DashboardLink(title).type(model.DashboardLinkType.LINK).url(
        f"/d/{uid}?var-host=${{__data.fields.host}}&${{{DATASOURCE}:queryparam}}&${{__url_time_range}}")


# ---- panels --------------------------------------------------------------------------------------------

def _common(panel, title: str, description: str, links: Iterable[dashboard.DashboardLink] = ()):
    panel = panel.title(title).description(description).datasource(PROMETHEUS)
    links = list(links)
    return panel.links(links) if links else panel


def stat_panel(title: str, description: str, targets: Sequence[prometheus.Dataquery], unit: str,
               thresholds: dashboard.ThresholdsConfig, *, mappings: Sequence = (), no_value: str | None = None,
               links: Iterable[dashboard.DashboardLink] = (), sparkline: bool = False,
               overrides: Sequence[tuple[str, list]] = ()) -> stats.Panel:
    panel = (_common(stats.Panel(), title, description, links).unit(unit).thresholds(thresholds)
             .color_mode(common.BigValueColorMode.BACKGROUND)
             .graph_mode(common.BigValueGraphMode.AREA if sparkline else common.BigValueGraphMode.NONE)
             .text_mode(common.BigValueTextMode.AUTO)
             .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False)))
    if mappings:
        panel = panel.mappings(list(mappings))
    if no_value is not None:
        panel = panel.no_value(no_value)
    for name, properties in overrides:
        panel = panel.override_by_name(name, properties)
    return _targets(panel, targets)


def stat(title: str, description: str, expr: str, unit: str, thresholds: dashboard.ThresholdsConfig, *,
         legend: str = "", **options) -> stats.Panel:
    return stat_panel(title, description, [query(expr, legend, instant=True)], unit, thresholds, **options)


def state(title: str, description: str, expr: str, zero: str, one: str, *, legend: str = "",
          zero_color: str = "red", one_color: str = "green", **options) -> stats.Panel:
    """A 0/1 series as words: up/down, ok/failed."""
    thresholds = steps(zero_color, (1, one_color))
    return stat_panel(title, description, [query(expr, legend, instant=True)], STATE, thresholds,
                      mappings=[words(zero, one, zero_color, one_color)], **options)


def age(title: str, description: str, timestamp: str, thresholds: dashboard.ThresholdsConfig, *,
        legend: str = "", **options) -> stats.Panel:
    """How long ago a timestamp was, "never" for 0 (and, with no_value, for a series not published yet)."""
    return stat_panel(title, description, [query(since(timestamp), legend, instant=True)], SECONDS, thresholds,
                      mappings=[never()], **options)


def bars(title: str, description: str, targets: Sequence[prometheus.Dataquery], unit: str,
         thresholds: dashboard.ThresholdsConfig, *, mappings: Sequence = (), calc: str = "lastNotNull",
         minimum: float | None = None, maximum: float | None = None,
         overrides: Sequence[tuple[str, list]] = (),
         regexp_overrides: Sequence[tuple[str, list]] = ()) -> bargauge.Panel:
    """Bars, one per series; overrides match a series by its name, regexp overrides by a pattern of it."""
    panel = (_common(bargauge.Panel(), title, description).unit(unit).thresholds(thresholds)
             .orientation(common.VizOrientation.HORIZONTAL).display_mode(common.BarGaugeDisplayMode.BASIC)
             .show_unfilled(True).reduce_options(ReduceDataOptions().calcs([calc]).values(False)))
    if mappings:
        panel = panel.mappings(list(mappings))
    if minimum is not None:
        panel = panel.min(minimum)
    if maximum is not None:
        panel = panel.max(maximum)
    for name, properties in overrides:
        panel = panel.override_by_name(name, properties)
    for pattern, properties in regexp_overrides:
        panel = panel.override_by_regexp(pattern, properties)
    return _targets(panel, targets)


def graph(title: str, description: str, targets: Sequence[prometheus.Dataquery], unit: str, *,
          thresholds: dashboard.ThresholdsConfig | None = None, stack: bool = False,
          minimum: float | None = None, maximum: float | None = None,
          links: Iterable[dashboard.DashboardLink] = (),
          overrides: Sequence[tuple[str, list]] = ()) -> timeseries.Panel:
    """A time series; with thresholds, each is drawn as a dashed line where its alert fires."""
    panel = (_common(timeseries.Panel(), title, description, links).unit(unit)
             .line_width(1).fill_opacity(10).show_points(common.VisibilityMode.NEVER)
             .legend(VizLegendOptions().display_mode(common.LegendDisplayMode.LIST)
                     .placement(common.LegendPlacement.BOTTOM).show_legend(True))
             .tooltip(VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING)))
    if thresholds is not None:
        panel = panel.thresholds(thresholds).thresholds_style(
            GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED))
    if stack:
        panel = panel.stacking(StackingConfig().mode(common.StackingMode.NORMAL)).fill_opacity(40)
    if minimum is not None:
        panel = panel.min(minimum)
    if maximum is not None:
        panel = panel.max(maximum)
    for name, properties in overrides:
        panel = panel.override_by_name(name, properties)
    return _targets(panel, targets)


def timeline(title: str, description: str, targets: Sequence[prometheus.Dataquery], mappings: Sequence,
             thresholds: dashboard.ThresholdsConfig, unit: str = STATE) -> statetimeline.Panel:
    """A state over time, in words and colours: a 0/1 series, an HTTP status."""
    panel = (_common(statetimeline.Panel(), title, description).unit(unit).thresholds(thresholds)
             .mappings(list(mappings)).show_value(common.VisibilityMode.NEVER).merge_values(True)
             .legend(VizLegendOptions().display_mode(common.LegendDisplayMode.LIST)
                     .placement(common.LegendPlacement.BOTTOM).show_legend(True)))
    return _targets(panel, targets)


def latency_heatmap(title: str, description: str, expr: str) -> heatmap.Panel:
    panel = (_common(heatmap.Panel(), title, description).unit(SECONDS).calculate(False)
             .y_axis(heatmap.YAxisConfig().unit(SECONDS)))
    return _targets(panel, [query(expr, "{{le}}").format(PromQueryFormat.HEATMAP)])


@dataclass
class Column:
    """One value column of a merged table: the query, its header, and how its numbers read."""

    header: str
    expr: str
    unit: str
    mappings: Sequence = ()
    thresholds: dashboard.ThresholdsConfig | None = None
    colored: bool = False


def merged_table(title: str, description: str, columns: Sequence[Column], *, hide: Sequence[str] = (),
                 sort_by: str | None = None, descending: bool = True, thresholds=None,
                 row_links: Sequence[dashboard.DashboardLink] = ()) -> table.Panel:
    """Instant queries merged into one frame (one row per label set), with a header and a unit per column."""
    rename = {(f"Value #{REFS[i]}" if len(columns) > 1 else "Value"): c.header for i, c in enumerate(columns)}
    exclude = {name: True for name in ("Time", "__name__", *hide)}
    panel = (_common(table.Panel(), title, description).unit(columns[0].unit)
             .thresholds(thresholds or neutral()).filterable(False)
             .with_transformation(model.DataTransformerConfig(id_val="merge", options={}))
             .with_transformation(model.DataTransformerConfig(
                 id_val="organize", options={"excludeByName": exclude, "renameByName": rename,
                                             "indexByName": {}})))
    for column in columns:
        properties = [model.DynamicConfigValue(id_val="unit", value=column.unit)]
        if column.mappings:
            properties.append(model.DynamicConfigValue(id_val="mappings", value=list(column.mappings)))
        if column.thresholds is not None:
            properties.append(model.DynamicConfigValue(id_val="thresholds", value=column.thresholds.build()))
        if column.colored:
            properties.append(model.DynamicConfigValue(id_val="custom.cellOptions",
                                                       value={"type": "color-background"}))
        panel = panel.override_by_name(column.header, properties)
    if row_links:
        panel = panel.data_links(list(row_links))
    if sort_by:
        panel = panel.sort_by([TableSortByFieldState().display_name(sort_by).desc(descending)])
    return _targets(panel, [query(c.expr, instant=True, table_format=True) for c in columns])


def alert_rules(title: str, description: str, hidden_alert: str,
                links: Iterable[dashboard.DashboardLink] = ()) -> dashboard.Panel:
    """Grafana's alert list over Prometheus's rules, firing and pending, without the always-firing heartbeat."""
    panel = (dashboard.Panel().type("alertlist").title(title).description(description).targets([])
             .options({"viewMode": "list", "groupMode": "default", "groupBy": [], "maxItems": 20,
                       "sortOrder": 3, "dashboardAlerts": False, "alertName": "", "showInstances": True,
                       "datasource": PROMETHEUS_NAME,
                       "alertInstanceLabelFilter": f'{{alertname!="{hidden_alert}"}}',
                       "stateFilter": {"firing": True, "pending": True, "noData": False, "normal": False,
                                       "error": True}}))
    links = list(links)
    return panel.links(links) if links else panel


# ---- boards --------------------------------------------------------------------------------------------

@dataclass
class Row:
    """Panels side by side, each with its width (of 24) and the row's height."""

    height: int
    panels: list[tuple[Builder, int]] = field(default_factory=list)


# The fleet: every series of a host carries `host` (prometheus/prometheus.yml); every board picks hosts with it.
HOST = 'host=~"$host"'
HOSTS_QUERY = 'label_values(up{job="opsmon-exporter"}, host)'


def on_hosts(*matchers: str) -> str:
    """A label matcher list for the selected hosts: `{host=~"$host", ...}`."""
    return "{" + ", ".join((HOST, *matchers)) + "}"


def with_hosts(selector: str) -> str:
    """A series selector (`name` or `name{...}`) narrowed to the selected hosts."""
    name, _, matchers = selector.partition("{")
    return name + on_hosts(*filter(None, [matchers.rstrip("}").strip()]))


def datasource_variable() -> dashboard.DatasourceVariable:
    """Prometheus by default; the long-term store (or any Prometheus-type datasource) for long ranges."""
    return (dashboard.DatasourceVariable(DATASOURCE).label("Data source").type("prometheus")
            .current(model.VariableOption(text="Prometheus", value=PROMETHEUS_UID, selected=True)))


def host_variable() -> dashboard.QueryVariable:
    """The hosts whose exporter Prometheus scrapes: every host of the fleet, whatever else it runs."""
    return _query_variable("host", "Host", HOSTS_QUERY)


def variable(name: str, label: str, metric: str, label_name: str) -> dashboard.QueryVariable:
    """A multi-value variable of a label's values, "All" by default, used in expressions as `=~"$name"`."""
    return _query_variable(name, label, f"label_values({metric}, {label_name})")


def _query_variable(name: str, label: str, definition: str) -> dashboard.QueryVariable:
    return (dashboard.QueryVariable(name).label(label).datasource(PROMETHEUS)
            .query({"query": definition, "refId": "v"}).refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(model.VariableSort.ALPHABETICAL_ASC).multi(True).include_all(True).all_value(".*")
            .current(model.VariableOption(text="All", value="$__all", selected=True)))


def board(uid: str, title: str, description: str, rows: Sequence[Row], *,
          variables: Sequence[dashboard.QueryVariable] = (),
          links: Sequence[dashboard.DashboardLink] = ()) -> dashboard.Dashboard:
    """A board: fixed uid, read-only, shared crosshair, a link to every other opsmon board (time and variables
    kept), and the datasource and host variables before its own."""
    builder = (dashboard.Dashboard(title).uid(uid).description(description).tags([TAG]).readonly()
               .tooltip(model.DashboardCursorSync.CROSSHAIR).timezone("browser").time("now-6h", "now")
               .refresh("30s")
               .link(dashboard.DashboardLink("opsmon").type(model.DashboardLinkType.DASHBOARDS).tags([TAG])
                     .as_dropdown(False).keep_time(True).include_vars(True).icon("external link")))
    for extra in links:
        builder = builder.link(extra)
    builder = builder.variables([datasource_variable(), host_variable(), *variables]).annotation(
        dashboard.AnnotationQuery().name("Annotations & Alerts").type("dashboard").built_in(1).enable(True)
        .hide(True).icon_color("rgba(0, 211, 255, 1)")
        .datasource(model.DataSourceRef(type_val="grafana", uid="-- Grafana --")))
    y, panel_id = 0, 1
    for row in rows:
        x = 0
        for panel, width in row.panels:
            if x + width > 24:
                raise ValueError(f"{uid}: a row wider than 24 at {panel.build().title!r}")
            builder = builder.with_panel(panel.id(panel_id).grid_pos(model.GridPos(h=row.height, w=width, x=x, y=y)))
            x += width
            panel_id += 1
        y += row.height
    return builder
