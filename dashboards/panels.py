"""The panel library the dashboards are written in, on Grafana's foundation SDK (the Grafana 11.6 build).

A dashboard is a list of panels (``TimeSeries``, ``Stat``, ``Table``), each drawing one or more
``Query``s. ``dashboard()`` lays them out on Grafana's 24-column grid and adds what every libp2p
dashboard shares: the ``datasource``, ``instance`` and ``node`` variables and the links between the
dashboards. The records keep the dashboards readable; the SDK keeps the JSON valid for Grafana 11.6.
Every query selects on the ``$instance`` and ``$node`` variables and uses the ``$datasource``
variable, never a fixed uid.
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
RATE_WINDOW = "$__rate_interval"
TIME_RANGE = "$__range"
TAGS = ["libp2p", "libp2p-exporter"]
GRID_WIDTH = 24

# A step is (lower bound, colour); a bound of None is the base step (Grafana's -Infinity).
Steps = list[tuple[float | None, str]]


@dataclass(frozen=True)
class Query:
    """One PromQL query of a panel and its legend (``{{label}}`` placeholders)."""

    expr: str
    legend: str = ""


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
        return pq.Dataquery().expr(query.expr).legend_format(query.legend).ref_id(ref_id).datasource(DATASOURCE).range()

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
class Table(Panel):
    """The series of an instant query as rows, one column per label."""

    def visualisation(self) -> Any:
        return table.Panel().align(cm.FieldTextAlignment.AUTO).inspect(False).show_header(True)

    def prometheus_query(self, query: Query, ref_id: str) -> pq.Dataquery:
        q = pq.Dataquery().expr(query.expr).legend_format(query.legend).ref_id(ref_id).datasource(DATASOURCE)
        return q.instant().format(pm.PromQueryFormat.TABLE)


def threshold_steps(steps: Steps) -> db.ThresholdsConfig:
    """Absolute steps; a first step without a value sets the base colour (green unless given)."""
    if not steps or steps[0][0] is not None:
        steps = [(None, "green"), *steps]
    return (
        db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps([dm.Threshold(value=v, color=c) for v, c in steps])
    )


def variables() -> list[Any]:
    """The data source, then the exporter instances, then the nodes those instances watch."""
    return [
        db.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        db.QueryVariable("instance")
        .label("Exporter instance")
        .datasource(DATASOURCE)
        .query("label_values(libp2p_exporter_up, instance)")
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


def dashboard(uid: str, title: str, description: str, panels: list[Panel]) -> dm.Dashboard:
    """A libp2p dashboard: the shared variables and links, the panels left to right, top to bottom."""
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
    x = y = line_height = 0
    for panel_id, panel in enumerate(panels, start=1):
        if x + panel.width > GRID_WIDTH:  # start a new line when the panel does not fit
            x, y, line_height = 0, y + line_height, 0
        b = b.with_panel(panel.build(panel_id, x, y))
        x, line_height = x + panel.width, max(line_height, panel.height)
    return b.build()
