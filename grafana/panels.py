"""Building blocks shared by every feedwatch dashboard, on top of grafana-foundation-sdk.

One place decides what all dashboards have in common, so they cannot drift apart:

- every panel and variable queries the ``datasource`` variable (``${datasource}``), whose
  default is the provisioned Prometheus (fixed UID ``feedwatch-prometheus``);
- health-state colours and names come from ``exporter.book`` (the state codes the exporter
  emits in ``feedwatch_symbol_state``) and staleness thresholds from ``exporter.config``'s
  defaults, so a change to the health model shows up in the dashboards on the next
  ``python -m grafana.generate``;
- panel factories always set a unit, a description and at least one query.

Dashboard modules in ``grafana/dashboards_src/`` import from here; so may the trading
dashboards.
"""

from __future__ import annotations

from typing import Any, Sequence, TypeVar, Union

from grafana_foundation_sdk.builders import bargauge, common as common_builders, dashboard, prometheus
from grafana_foundation_sdk.builders import stat, statetimeline, table, timeseries
from grafana_foundation_sdk.models import common, units
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from exporter.book import CLOSED, CRITICAL, DEGRADED, HEALTHY, STALE, STATE_NAMES
from exporter.config import Thresholds

# The provisioned datasource (grafana/provisioning/datasources/prometheus.yml) has this UID;
# dashboards reach it through the ``datasource`` variable so another Prometheus can be chosen.
PROVISIONED_DATASOURCE_UID = "feedwatch-prometheus"
DATASOURCE = models.DataSourceRef(type_val="prometheus", uid="${datasource}")

# Every feedwatch dashboard carries this tag; the "dashboards" link menu lists them by it.
TAG = "feedwatch"

# Colours of the health states, as feedwatch_symbol_state encodes them.
STATE_COLOURS = {
    HEALTHY: "green",
    DEGRADED: "yellow",
    STALE: "orange",
    CRITICAL: "red",
    CLOSED: "#8e8e8e",  # grey: outside the market session is not an error
}

_DEFAULT_THRESHOLDS = Thresholds()

# Any of the SDK's panel builders (they share the field-config methods used here).
PanelBuilder = TypeVar("PanelBuilder", bound=Union[stat.Panel, timeseries.Panel, table.Panel,
                                                   bargauge.Panel, statetimeline.Panel])


# --- queries and variables ----------------------------------------------------------------------

def query(expr: str, legend: str = "", *, instant: bool = False, as_table: bool = False,
          ref: str = "A") -> prometheus.Dataquery:
    """A PromQL target on the ``datasource`` variable."""
    target = (prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
              .legend_format(legend or "__auto"))
    target = target.instant() if instant else target.range()
    if as_table:
        target = target.format(PromQueryFormat.TABLE)
    return target


def datasource_variable() -> dashboard.DatasourceVariable:
    """The Prometheus to query; defaults to the provisioned one."""
    return (dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")
            .current(models.VariableOption(text="Prometheus", value=PROVISIONED_DATASOURCE_UID,
                                           selected=True)))


def label_variable(name: str, label: str, series: str, *, title: str, multi: bool = False,
                   include_all: bool = False) -> dashboard.QueryVariable:
    """A variable listing the values of ``label`` on ``series`` (``label_values`` query)."""
    variable = (dashboard.QueryVariable(name).label(title).datasource(DATASOURCE)
                .query({"qryType": 1, "query": f"label_values({series}, {label})",
                        "refId": "PrometheusVariableQueryEditor-VariableQuery"})
                .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
                .sort(models.VariableSort.ALPHABETICAL_ASC).multi(multi).include_all(include_all))
    if include_all:
        # ".*" rather than the expanded list: a feed added later is included without a reload.
        variable = variable.all_value(".*")
    return variable


# --- health states ------------------------------------------------------------------------------

def state_mappings() -> list[models.ValueMapping]:
    """feedwatch_symbol_state values -> state names in their colours."""
    options = {
        str(code): models.ValueMappingResult(text=STATE_NAMES[code], color=STATE_COLOURS[code], index=i)
        for i, code in enumerate((HEALTHY, DEGRADED, STALE, CRITICAL, CLOSED))
    }
    return [models.ValueMap(options=options)]


def flag_mappings(on: str, off: str, *, on_colour: str = "green", off_colour: str = "red") -> list[models.ValueMapping]:
    """A 0/1 gauge shown as two words in two colours (feed up, healthy, market open)."""
    return [models.ValueMap(options={
        "1": models.ValueMappingResult(text=on, color=on_colour, index=0),
        "0": models.ValueMappingResult(text=off, color=off_colour, index=1),
    })]


def staleness_thresholds() -> dashboard.ThresholdsConfig:
    """Seconds since the last update, coloured at the default health boundaries."""
    return threshold_steps([
        (None, STATE_COLOURS[HEALTHY]),
        (_DEFAULT_THRESHOLDS.degraded, STATE_COLOURS[DEGRADED]),
        (_DEFAULT_THRESHOLDS.stale, STATE_COLOURS[STALE]),
        (_DEFAULT_THRESHOLDS.critical, STATE_COLOURS[CRITICAL]),
    ])


def plain_thresholds(colour: str = "green") -> dashboard.ThresholdsConfig:
    """No threshold: a single base colour."""
    return threshold_steps([(None, colour)])


def warn_above(value: float, base: str = "green", warn: str = "red") -> dashboard.ThresholdsConfig:
    return threshold_steps([(None, base), (value, warn)])


def threshold_steps(steps: Sequence[tuple[float | None, str]]) -> dashboard.ThresholdsConfig:
    """Absolute thresholds from (lower bound, colour) pairs; the first bound is None (the base)."""
    return (dashboard.ThresholdsConfig().mode(models.ThresholdsMode.ABSOLUTE)
            .steps([models.Threshold(value=value, color=colour) for value, colour in steps]))


def threshold_bands() -> common_builders.GraphThresholdsStyleConfig:
    """Draw a graph's thresholds as lines over coloured bands (the health states' colours)."""
    return common_builders.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.LINE_AND_AREA)


def fixed_colour(colour: str) -> list[models.DynamicConfigValue]:
    """Override properties that paint a field in one colour."""
    return [models.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": colour})]


def state_name_colours(panel: PanelBuilder) -> PanelBuilder:
    """Colour series named after a health state (``{{state}}`` legends) in that state's colour."""
    for code, name in STATE_NAMES.items():
        panel = panel.override_by_name(name, fixed_colour(STATE_COLOURS[code]))
    return panel


# --- links --------------------------------------------------------------------------------------

def dashboard_link(title: str, uid: str, *, tooltip: str = "") -> dashboard.DashboardLink:
    """A link in the dashboard's header to another dashboard, carrying variables and time range."""
    return (dashboard.DashboardLink(title).type(models.DashboardLinkType.LINK).url(f"/d/{uid}")
            .tooltip(tooltip or title).include_vars(True).keep_time(True).icon("dashboard"))


def all_dashboards_link() -> dashboard.DashboardLink:
    """A drop-down of every dashboard tagged ``feedwatch``."""
    return (dashboard.DashboardLink("feedwatch").type(models.DashboardLinkType.DASHBOARDS).tags([TAG])
            .as_dropdown(True).include_vars(True).keep_time(True))


def data_link(title: str, url: str) -> dashboard.DashboardLink:
    """A link on a panel's values (``${__data.fields.x}`` and ``${__field.labels.x}`` expand)."""
    return dashboard.DashboardLink(title).url(url)


# --- panels -------------------------------------------------------------------------------------

def base_dashboard(title: str, uid: str, description: str) -> dashboard.Dashboard:
    """Common settings: stable UID, tag, last hour, 30 s refresh, shared crosshair."""
    return (dashboard.Dashboard(title).uid(uid).description(description).tags([TAG])
            .time("now-1h", "now").refresh("30s").timezone("browser")
            .tooltip(models.DashboardCursorSync.CROSSHAIR).editable()
            .annotation(dashboard.AnnotationQuery().name("Annotations & Alerts").built_in(1)
                        .datasource(models.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
                        .enable(True).hide(True).icon_color("rgba(0, 211, 255, 1)").type("dashboard"))
            .with_variable(datasource_variable()))


def stat_panel(title: str, description: str, targets: Sequence[prometheus.Dataquery], *, unit: str,
               width: int = 6, height: int = 4) -> stat.Panel:
    """A big number (the last value of each series), coloured by thresholds or mappings."""
    panel = (stat.Panel().title(title).description(description).datasource(DATASOURCE).unit(unit)
             .span(width).height(height).color_mode(common.BigValueColorMode.BACKGROUND)
             .graph_mode(common.BigValueGraphMode.NONE).text_mode(common.BigValueTextMode.VALUE_AND_NAME)
             .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
             .orientation(common.VizOrientation.AUTO))
    for target in targets:
        panel = panel.with_target(target)
    return panel


def timeseries_panel(title: str, description: str, targets: Sequence[prometheus.Dataquery], *,
                     unit: str, width: int = 12, height: int = 8, bars: bool = False,
                     stacked: bool = False) -> timeseries.Panel:
    """A graph over time with a table legend that shows each series' last and max values."""
    panel = (timeseries.Panel().title(title).description(description).datasource(DATASOURCE).unit(unit)
             .span(width).height(height).fill_opacity(25 if (bars or stacked) else 10)
             .line_width(1).show_points(common.VisibilityMode.NEVER)
             .legend(common_builders.VizLegendOptions().display_mode(common.LegendDisplayMode.TABLE)
                     .placement(common.LegendPlacement.BOTTOM).show_legend(True)
                     .calcs(["lastNotNull", "max"]).sort_by("Max").sort_desc(True))
             .tooltip(common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI)
                      .sort(common.SortOrder.DESCENDING)))
    if bars:
        panel = panel.draw_style(common.GraphDrawStyle.BARS)
    if stacked:
        panel = panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    for target in targets:
        panel = panel.with_target(target)
    return panel


def state_timeline_panel(title: str, description: str, targets: Sequence[prometheus.Dataquery], *,
                         unit: str = units.NoUnit, width: int = 24, height: int = 6) -> statetimeline.Panel:
    """States over time as coloured bands."""
    panel = (statetimeline.Panel().title(title).description(description).datasource(DATASOURCE)
             .unit(unit).span(width).height(height).show_value(common.VisibilityMode.AUTO)
             .merge_values(True).row_height(0.9).fill_opacity(80).line_width(0)
             .legend(common_builders.VizLegendOptions().display_mode(common.LegendDisplayMode.LIST)
                     .placement(common.LegendPlacement.BOTTOM).show_legend(True)))
    for target in targets:
        panel = panel.with_target(target)
    return panel


def bar_gauge_panel(title: str, description: str, targets: Sequence[prometheus.Dataquery], *,
                    unit: str, width: int = 12, height: int = 8) -> bargauge.Panel:
    """Horizontal bars, one per series (for "which ones, how many" questions)."""
    panel = (bargauge.Panel().title(title).description(description).datasource(DATASOURCE).unit(unit)
             .span(width).height(height).orientation(common.VizOrientation.HORIZONTAL)
             .display_mode(common.BarGaugeDisplayMode.GRADIENT).show_unfilled(True)
             .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False)))
    for target in targets:
        panel = panel.with_target(target)
    return panel


def table_panel(title: str, description: str, targets: Sequence[prometheus.Dataquery], *,
                unit: str, width: int = 12, height: int = 10) -> table.Panel:
    """A table of instant values (transformations and column overrides are added by the caller)."""
    panel = (table.Panel().title(title).description(description).datasource(DATASOURCE).unit(unit)
             .span(width).height(height).show_header(True).cell_height(common.TableCellHeight.SM))
    for target in targets:
        panel = panel.with_target(target)
    return panel


def row(title: str) -> dashboard.Row:
    return dashboard.Row(title)


def merged_table(panel: table.Panel, rename: dict[str, str], order: dict[str, int] | None = None) -> table.Panel:
    """One row per label set from a table's several instant queries: merge them, hide ``Time``,
    name the value columns (``{"Value #A": "Position", ...}``) and optionally order the columns."""
    organize: dict[str, Any] = {"excludeByName": {"Time": True}, "renameByName": rename}
    if order is not None:
        organize["indexByName"] = order
    return (panel.with_transformation(models.DataTransformerConfig(id_val="merge", options={}))
            .with_transformation(models.DataTransformerConfig(id_val="organize", options=organize)))
