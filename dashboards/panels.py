"""The panel library the dashboards are written in, on Grafana's foundation SDK (the Grafana 11.6 build).

A dashboard is a list of ``Row``s (collapsible sections), each holding panels (``TimeSeries``,
``Stat``, ``RangeTotals``, ``Table``) that draw one or more ``Query``s. ``dashboard()`` lays them out
on Grafana's 24-column grid and adds what every libp2p dashboard shares: the ``datasource``,
``job`` (the exporter's scrape job, whatever Prometheus calls it), ``instance`` and ``node`` variables, the links between the dashboards and an annotation for the
alerts firing on the selected nodes. The records keep the dashboards readable; the SDK keeps the
JSON valid for Grafana 11.6. Every query selects on the ``$instance`` and ``$node`` variables and
uses the ``$datasource`` variable, never a fixed uid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus as pq
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
NODE_SELECTOR = 'instance=~"$instance", node=~"$node"'
INSTANCE_SELECTOR = 'instance=~"$instance"'
JOB_SELECTOR = 'job=~"$job"'  # Prometheus' own series (up): the job the exporter is scraped under
RATE_WINDOW = "$__rate_interval"
TIME_RANGE = "$__range"
TAGS = ["libp2p", "libp2p-exporter"]
GRID_WIDTH = 24
# Churn ratios are (events per minute) / current peers: Grafana has no such unit, so a custom suffix.
PER_MINUTE_PER_PEER = "suffix:/min/peer"
# Alerts whose labels name a selected node, or name no node at all (a target down) on a selected instance.
FIRING_ALERTS = 'ALERTS{alertstate="firing", instance=~"$instance", node=~"$node|"}'
# Grafana's Prometheus annotations keep these beside ``expr`` (the published schema and the SDK model
# leave them out): the marker's title, its text and the labels shown as tags.
PROMETHEUS_ANNOTATION_KEYS = ("titleFormat", "textFormat", "tagKeys")

# A step is (lower bound, colour); a bound of None is the base step (Grafana's -Infinity).
Steps = list[tuple[float | None, str]]


@dataclass(frozen=True)
class Query:
    """One PromQL query of a panel and its legend (``{{label}}`` placeholders)."""

    expr: str
    legend: str = ""
    instant: bool = False  # one value per series at the end of the range (totals over $__range)


@dataclass
class Panel:
    """What every panel has: a title, a description, a unit and its queries; width and height in grid cells."""

    title: str
    description: str
    unit: str
    queries: list[Query]
    width: int = 12
    height: int = 8
    thresholds: Steps = field(default_factory=list)
    min: float | None = None

    def visualisation(self) -> Any:
        """The SDK builder of this panel's visualisation, before the common options."""
        raise NotImplementedError

    def prometheus_query(self, query: Query, ref_id: str) -> pq.Dataquery:
        q = pq.Dataquery().expr(query.expr).legend_format(query.legend).ref_id(ref_id).datasource(DATASOURCE)
        return q.instant() if query.instant else q.range()

    def build(self, panel_id: int, x: int, y: int) -> Any:
        b = self.visualisation().id(panel_id).title(self.title).description(self.description).unit(self.unit)
        b = b.datasource(DATASOURCE).grid_pos(dm.GridPos(h=self.height, w=self.width, x=x, y=y))
        if self.min is not None:
            b = b.min(self.min)
        if self.thresholds:
            b = b.thresholds(threshold_steps(self.thresholds))
        for i, query in enumerate(self.queries):
            b = b.with_target(self.prometheus_query(query, chr(ord("A") + i)))
        return b


@dataclass
class TimeSeries(Panel):
    """Lines over time; ``stack`` stacks them (parts of a whole). Thresholds are drawn as dashed lines."""

    stack: bool = False

    def visualisation(self) -> Any:
        b = (
            timeseries.Panel()
            .line_width(1)
            .fill_opacity(10)
            .legend(
                cb.VizLegendOptions()
                .show_legend(True)
                .display_mode(cm.LegendDisplayMode.LIST)
                .placement(cm.LegendPlacement.BOTTOM)
            )
            .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING))
        )
        if self.stack:
            b = b.stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL)).fill_opacity(40)
        if self.thresholds:
            b = b.thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED))
        return b


@dataclass
class Stat(Panel):
    """One big number per series: the last value, over a sparkline of the time range."""

    def visualisation(self) -> Any:
        return (
            stat.Panel()
            .graph_mode(cm.BigValueGraphMode.AREA)
            .color_mode(cm.BigValueColorMode.VALUE)
            .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        )


@dataclass
class RangeTotals(Panel):
    """Totals over the dashboard's time range (``increase(...[$__range])``): one number per series, with
    its name, from instant queries. A time series of such a total would redraw the whole range at
    every point."""

    def visualisation(self) -> Any:
        return (
            stat.Panel()
            .graph_mode(cm.BigValueGraphMode.NONE)
            .color_mode(cm.BigValueColorMode.VALUE)
            .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
            .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        )

    def prometheus_query(self, query: Query, ref_id: str) -> pq.Dataquery:
        return super().prometheus_query(Query(query.expr, query.legend, instant=True), ref_id)


# What a table-format instant query adds besides the labels: the sample time, the metric name, the value.
QUERY_COLUMNS = ("Time", "__name__", "Value", "Value #A")


@dataclass
class Table(Panel):
    """The series of an instant query as rows. ``columns`` maps labels, in the order to show them, to their
    headers; the sample time, metric name and value are left out, labels not listed (a live target's
    own labels) come after the listed ones."""

    columns: dict[str, str] = field(default_factory=dict)

    def visualisation(self) -> Any:
        b = table.Panel().align(cm.FieldTextAlignment.AUTO).inspect(False).show_header(True)
        if self.columns:
            b = b.with_transformation(
                dm.DataTransformerConfig(
                    id_val="organize",
                    options={
                        "excludeByName": dict.fromkeys(QUERY_COLUMNS, True),
                        "indexByName": {label: i for i, label in enumerate(self.columns)},
                        "renameByName": dict(self.columns),
                    },
                )
            )
        return b

    def prometheus_query(self, query: Query, ref_id: str) -> pq.Dataquery:
        q = pq.Dataquery().expr(query.expr).legend_format(query.legend).ref_id(ref_id).datasource(DATASOURCE)
        return q.instant().format(pm.PromQueryFormat.TABLE)


@dataclass
class Row:
    """A titled, collapsible section of a dashboard and the panels under it."""

    title: str
    panels: list[Panel]


class PrometheusAnnotation(dm.AnnotationQuery):
    """An annotation drawn from a PromQL query, with the Prometheus data source's own formatting keys."""

    def __init__(self, *, title_format: str, text_format: str, tag_keys: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.formats = dict(zip(PROMETHEUS_ANNOTATION_KEYS, (title_format, text_format, tag_keys)))

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), **self.formats}


def firing_alerts_annotation() -> PrometheusAnnotation:
    """A red region over the graphs while an alert fires on one of the selected nodes, named after it."""
    return PrometheusAnnotation(
        name="Firing alerts",
        datasource=DATASOURCE,
        enable=True,
        icon_color="red",
        expr=FIRING_ALERTS,
        title_format="{{alertname}}",
        text_format="{{severity}} alert on {{instance}}",
        tag_keys="node,severity",
    )


def threshold_steps(steps: Steps) -> db.ThresholdsConfig:
    """Absolute steps; a first step without a value sets the base colour (green unless given)."""
    if not steps or steps[0][0] is not None:
        steps = [(None, "green"), *steps]
    return (
        db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps([dm.Threshold(value=v, color=c) for v, c in steps])
    )


def variables() -> list[Any]:
    """The data source, then the scrape jobs the exporter is scraped under (whatever Prometheus names
    them), then the exporter instances of those jobs, then the nodes those instances watch. ``All``
    jobs means those found, not every job in Prometheus (no custom all value)."""
    return [
        db.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        db.QueryVariable("job")
        .label("Job")
        .datasource(DATASOURCE)
        .query("label_values(libp2p_exporter_up, job)")
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True),
        db.QueryVariable("instance")
        .label("Exporter instance")
        .datasource(DATASOURCE)
        .query('label_values(libp2p_exporter_up{job=~"$job"}, instance)')
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*"),
        db.QueryVariable("node")
        .label("Node")
        .datasource(DATASOURCE)
        .query('label_values(libp2p_exporter_up{instance=~"$instance"}, node)')
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*"),
    ]


def dashboard(uid: str, title: str, description: str, rows: list[Row]) -> dm.Dashboard:
    """A libp2p dashboard: the shared variables, links and annotation; each row's panels left to right,
    top to bottom, under the row's title."""
    b = (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .editable()
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
    )
    for v in variables():
        b = b.with_variable(v)
    b = b.link(
        db.DashboardLink("libp2p dashboards")
        .type(dm.DashboardLinkType.DASHBOARDS)
        .tags(["libp2p-exporter"])
        .as_dropdown(True)
        .include_vars(True)
        .keep_time(True)
    )
    panel_id = y = 0
    for row in rows:
        panel_id += 1
        b = b.with_row(db.Row(row.title).id(panel_id).grid_pos(dm.GridPos(h=1, w=GRID_WIDTH, x=0, y=y)))
        x, y, line_height = 0, y + 1, 0
        for panel in row.panels:
            if x + panel.width > GRID_WIDTH:  # start a new line when the panel does not fit
                x, y, line_height = 0, y + line_height, 0
            panel_id += 1
            b = b.with_panel(panel.build(panel_id, x, y))
            x, line_height = x + panel.width, max(line_height, panel.height)
        y += line_height
    built = b.build()
    built.annotations.list_val = [firing_alerts_annotation()]
    return built
