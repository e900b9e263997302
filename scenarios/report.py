"""The scenario report: one self-contained HTML file that opens offline, for people who will not read a table.

It holds a map of the labs and delivery points with the flows of each policy, delivered-vs-demand
over time per policy, the metrics table, the solver's lower bound and gap, and the sources. Plotly.js
is inlined once; the country outlines (Natural Earth 1:110m via the `world-atlas` package, see
`scenarios/assets/README.md`) are embedded and handed to plotly as `window.PlotlyGeoAssets`, so the
map never asks a CDN for them (offline, plotly's geo maps are otherwise blank).
"""

from __future__ import annotations

import html
from collections import defaultdict
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from protocol.footprint import CO2_SOURCE
from scenarios.metrics import series
from scenarios.run import ScenarioResult
from scenarios.world import World

ASSETS = Path(__file__).with_name("assets")
WORLD_TOPOJSON = ASSETS / "countries-110m.json"
#: The name plotly.js looks the outlines up by (scope "world", resolution 110).
TOPOJSON_NAME = "world_110m"
COLOURS = {
    "cosmolocal": "#1b9e77",
    "central-factory": "#d95f02",
    "nearest-greedy": "#7570b3",
    "board": "#e7298a",
}
METRIC_ROWS: tuple[tuple[str, str, str], ...] = (
    ("units_demanded", "units demanded", "{:,}"),
    ("units_delivered", "units delivered", "{:,}"),
    ("fill_rate", "fill rate", "{:.1%}"),
    ("on_time_rate", "delivered on time (share of demand)", "{:.1%}"),
    ("units_late", "units delivered late", "{:,}"),
    ("units_missing", "units not delivered", "{:,}"),
    ("units_planned_on_time_arrived_late", "planned on time, arrived late", "{:,}"),
    ("plan_slip_rate", "planned on time, arrived late (share of delivered)", "{:.1%}"),
    ("units_slipped_stock_out", "… of them: a stock-out at the lab", "{:,}"),
    ("units_slipped_lab_lost", "… of them: the lab lost", "{:,}"),
    ("units_slipped_machine_down", "… of them: machines down at the lab", "{:,}"),
    ("units_slipped_lab_behind", "… of them: the lab fell behind its plan", "{:,}"),
    ("rates_days_until_met_worst", "days until a rate's need is met (slowest of those met)", "{:.1f}"),
    ("rates_not_met", "rates whose need is never met in the replay", "{}"),
    ("lead_time_mean_h", "lead time, mean (h)", "{:,.1f}"),
    ("lead_time_p95_h", "lead time, 95th percentile (h)", "{:,.1f}"),
    ("transport_unit_km", "transport (unit-km)", "{:,.0f}"),
    ("km_per_unit", "km per unit", "{:,.1f}"),
    ("transport_tonne_km", "transport (tonne-km, units and material transfers)", "{:,.2f}"),
    ("transfers", "material transfers between labs", "{:,}"),
    ("transfer_km", "material transfers (km)", "{:,.0f}"),
    ("co2_kg", "transport CO2e (kg)", "{:,.1f}"),
    ("labs_used", "labs used", "{}"),
    ("load_gini", "load spread over labs (Gini, 0 = even)", "{:.3f}"),
    ("utilisation", "machine utilisation", "{:.1%}"),
    ("plan_objective", "plan objective (sum over plans)", "{:,.0f}"),
    ("plan_bound", "plan lower bound (sum over plans)", "{:,.0f}"),
    ("plan_gap", "gap to the lower bound", "{:.4%}"),
    ("solve_seconds", "allocation time (s)", "{:.2f}"),
)


@cache
def world_topojson() -> str:
    """The embedded country outlines (TopoJSON text)."""
    return WORLD_TOPOJSON.read_text(encoding="utf-8")


def format_metric(value: Any, pattern: str) -> str:
    """A metric for a table, by its row's pattern; '-' when there is none."""
    if value is None:
        return "-"
    try:
        return pattern.format(value)
    except (TypeError, ValueError):
        return str(value)


def _add_transfers(figure: go.Figure, result: ScenarioResult) -> None:
    """Material shipped between labs (the solver's transfers): dotted lines sender -> receiver,
    with what and how much on hover at the receiver's end."""
    for name, policy_run in result.runs.items():
        if not policy_run.transfers:
            continue
        where = {lab.lab.id: lab.lab.location for lab in policy_run.labs}
        moved: dict[tuple[str, str, str], float] = defaultdict(float)
        for t in policy_run.transfers:
            moved[t.from_lab, t.to_lab, t.material] += t.quantity
        lats: list[float | None] = []
        lons: list[float | None] = []
        texts: list[str | None] = []
        for (sender, receiver, material), quantity in sorted(moved.items()):
            lats += [where[sender].lat, where[receiver].lat, None]
            lons += [where[sender].lon, where[receiver].lon, None]
            texts += [None, f"{quantity:.2f} {material} from {sender} to {receiver}", None]
        figure.add_trace(
            go.Scattergeo(
                lat=lats,
                lon=lons,
                mode="lines",
                line={"width": 1.5, "color": COLOURS.get(name, "#555"), "dash": "dot"},
                name=f"material transfers: {name}",
                text=texts,
                hoverinfo="text",
                visible=True if name == "cosmolocal" else "legendonly",
            )
        )


def map_figure(result: ScenarioResult) -> go.Figure:
    """Labs, delivery points, each policy's flows (lab -> delivery point, width by units) and the
    material it shipped between labs."""
    world = result.world
    figure = go.Figure()
    made: dict[str, int] = defaultdict(int)
    run = result.runs.get("cosmolocal") or next(iter(result.runs.values()))
    for d in run.deliveries:
        made[d.lab_id] += d.units
    for name, policy_run in result.runs.items():
        flows: dict[tuple[str, tuple[float, float]], int] = defaultdict(int)
        where = {lab.lab.id: lab.lab.location for lab in policy_run.labs}
        orders = {o.id: o for o in world.orders}
        for d in policy_run.deliveries:
            point = orders[d.order_id].delivery
            flows[d.lab_id, (point.lat, point.lon)] += d.units
        if not flows:
            continue
        biggest = max(flows.values())
        for band, (low, high) in enumerate(((0.0, 0.1), (0.1, 0.4), (0.4, 1.01))):
            lats: list[float | None] = []
            lons: list[float | None] = []
            for (lab_id, (lat, lon)), units in sorted(flows.items()):
                if low * biggest <= units < high * biggest and lab_id in where:
                    lats += [where[lab_id].lat, lat, None]
                    lons += [where[lab_id].lon, lon, None]
            if lats:
                figure.add_trace(
                    go.Scattergeo(
                        lat=lats,
                        lon=lons,
                        mode="lines",
                        line={"width": 1 + 2.5 * band, "color": COLOURS.get(name, "#555")},
                        opacity=0.55,
                        name=f"flows: {name}",
                        legendgroup=name,
                        showlegend=band == 0
                        or not any(
                            t.legendgroup == name for t in figure.data if isinstance(t, go.Scattergeo)
                        ),
                        visible=True if name == run.policy else "legendonly",
                        hoverinfo="skip",
                    )
                )
    _add_transfers(figure, result)
    points: dict[tuple[float, float], tuple[str, int]] = {}
    for order in world.orders:
        key = (order.delivery.lat, order.delivery.lon)
        place, units = points.get(key, (order.delivery.place or "", 0))
        points[key] = (place, units + order.quantity)
    figure.add_trace(
        go.Scattergeo(
            lat=[lab.location.lat for lab in world.labs],
            lon=[lab.location.lon for lab in world.labs],
            mode="markers",
            marker={
                "size": [
                    6 + 14 * (made[lab.id] / max(1, max(made.values(), default=1))) for lab in world.labs
                ],
                "color": COLOURS["cosmolocal"],
                "line": {"width": 1, "color": "#0b3d2e"},
            },
            name=f"labs (size: units made, {run.policy})",
            text=[f"{lab.name}: {made[lab.id]:,} units made ({run.policy})" for lab in world.labs],
            hoverinfo="text",
        )
    )
    figure.add_trace(
        go.Scattergeo(
            lat=[k[0] for k in points],
            lon=[k[1] for k in points],
            mode="markers",
            marker={
                "symbol": "diamond",
                "size": 9,
                "color": "#c0392b",
                "line": {"width": 1, "color": "white"},
            },
            name="delivery points",
            text=[f"{p}: {u:,} units ordered" for p, u in points.values()],
            hoverinfo="text",
        )
    )
    figure.add_trace(
        go.Scattergeo(
            lat=[world.central.lat],
            lon=[world.central.lon],
            mode="markers",
            marker={"symbol": "square", "size": 12, "color": COLOURS["central-factory"]},
            name="central factory (baseline)",
            text=[f"central factory: {world.central.place or ''}"],
            hoverinfo="text",
        )
    )
    figure.update_geos(
        scope="world",
        resolution=110,
        projection_type="mercator",
        fitbounds="locations",
        showland=True,
        landcolor="#eef0ea",
        showcountries=True,
        countrycolor="#9aa39a",
        showcoastlines=False,
        showocean=False,
        showlakes=False,
        showrivers=False,
        showsubunits=False,
        showframe=False,
        bgcolor="#f8fbff",
    )
    figure.update_layout(
        height=620,
        margin={"l": 0, "r": 0, "t": 30, "b": 0},
        legend={"orientation": "h", "y": -0.02},
        title="Labs, delivery points and flows (click a legend entry to show another policy)",
    )
    return figure


def timeline_figure(result: ScenarioResult) -> go.Figure:
    """Units demanded and delivered so far, day by day, per policy."""
    figure = go.Figure()
    first = True
    for name, run in result.runs.items():
        points = series(run)
        if first:
            figure.add_trace(
                go.Scatter(
                    x=[p[0] for p in points],
                    y=[p[1] for p in points],
                    name="demanded",
                    line={"color": "#333", "dash": "dot", "width": 2},
                )
            )
            first = False
        figure.add_trace(
            go.Scatter(
                x=[p[0] for p in points],
                y=[p[2] for p in points],
                name=f"delivered: {name}",
                line={"color": COLOURS.get(name, "#555"), "width": 2.5},
            )
        )
    figure.update_layout(
        height=420,
        margin={"l": 60, "r": 10, "t": 40, "b": 40},
        title="Delivered vs demanded over time (cumulative units)",
        xaxis_title="day",
        yaxis_title="units",
        legend={"orientation": "h", "y": -0.2},
    )
    return figure


def trade_figure(result: ScenarioResult) -> go.Figure:
    """Km per unit against the on-time share: Cosmolocal under each weighting, the baselines as points."""
    figure = go.Figure()
    rows = sorted(result.trade, key=lambda r: r["time_weight_scale"])
    figure.add_trace(
        go.Scatter(
            x=[r["km_per_unit"] for r in rows],
            y=[r["on_time_rate"] for r in rows],
            mode="lines+markers+text",
            text=[f"time ×{r['time_weight_scale']:g}" for r in rows],
            textposition="top center",
            marker={"color": COLOURS["cosmolocal"], "size": 9},
            name="Cosmolocal, by weighting of a day against a km",
        )
    )
    for m in result.metrics:
        if m["policy"] == "cosmolocal":
            continue
        figure.add_trace(
            go.Scatter(
                x=[m["km_per_unit"]],
                y=[m["on_time_rate"]],
                mode="markers",
                marker={"color": COLOURS.get(m["policy"], "#555"), "size": 12, "symbol": "diamond"},
                name=m["policy"],
            )
        )
    figure.update_layout(
        xaxis_title="km per unit delivered",
        yaxis_title="delivered on time (share of demand)",
        yaxis_tickformat=".0%",
        height=420,
        margin={"l": 60, "r": 20, "t": 20, "b": 50},
    )
    return figure


def load_figure(result: ScenarioResult) -> go.Figure:
    """Units made per lab, per networked policy: how the work spreads."""
    figure = go.Figure()
    labs = [lab.id for lab in result.world.labs]
    for name, run in result.runs.items():
        if name == "central-factory":
            continue
        made = {lab.lab.id: lab.units_made for lab in run.labs}
        figure.add_trace(
            go.Bar(x=labs, y=[made.get(lab, 0) for lab in labs], name=name, marker_color=COLOURS.get(name))
        )
    figure.update_layout(
        height=380,
        barmode="group",
        margin={"l": 60, "r": 10, "t": 40, "b": 120},
        title="Units made per lab",
        legend={"orientation": "h", "y": 1.1},
    )
    return figure


def _days(world: World) -> float:
    """The replay's length in days, to the last due date."""
    return round((world.end - world.start) / timedelta(days=1), 2)


def _rates_table(result: ScenarioResult) -> str:
    """Per rate and policy: days until its need is met, or the shortfall when it never is."""
    metrics = result.metrics
    if not any(m.get("rates") for m in metrics):
        return "<p class='muted'>This scenario has no rates.</p>"
    head = "".join(f"<th>{html.escape(str(m['policy']))}</th>" for m in metrics)
    rows = []
    for index, rate in enumerate(metrics[0]["rates"]):
        cells = []
        for m in metrics:
            need = m["rates"][index]
            days = need["days_until_met"]
            text = f"{days:.1f} days" if days is not None else f"never: {need['shortfall']:,} units short"
            cells.append(f"<td>{html.escape(text)}</td>")
        label = f"{rate['rate']}: {rate['design']}, {rate['units_per_day']:g} a day"
        rows.append(f"<tr><th scope='row'>{html.escape(label)}</th>{''.join(cells)}</tr>")
    return (
        f"<table class='metrics'><thead><tr><th>rate</th>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _metrics_table(result: ScenarioResult) -> str:
    metrics = result.metrics
    head = "".join(f"<th>{html.escape(str(m['policy']))}</th>" for m in metrics)
    rows = []
    for key, label, pattern in METRIC_ROWS:
        cells = "".join(f"<td>{html.escape(format_metric(m.get(key), pattern))}</td>" for m in metrics)
        rows.append(f"<tr><th scope='row'>{html.escape(label)}</th>{cells}</tr>")
    return (
        f"<table class='metrics'><thead><tr><th>metric</th>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


TRADE_SECTION = """<h2>Kilometres against days</h2>
<p class="muted">Cosmolocal replayed with the time weights scaled (×1 is the balanced objective, ×4
on-time, ×0.01 distance first): what each km saved costs in units on time. The other policies are
the points.</p>
<div id="trade"></div>"""


def render_report(result: ScenarioResult) -> str:
    """The whole report as one HTML string (plotly.js and the outlines inlined)."""
    scenario = result.world.loaded.scenario
    figures = {
        "map": map_figure(result),
        "timeline": timeline_figure(result),
        "load": load_figure(result),
    }
    if result.trade:
        figures["trade"] = trade_figure(result)
    calls = "\n".join(
        f"Plotly.newPlot('{key}', FIG_{key}.data, FIG_{key}.layout, CONFIG);" for key in figures
    )
    data = "\n".join(
        f"var FIG_{key} = {pio.to_json(figure, validate=False)};" for key, figure in figures.items()
    )
    cosmolocal = result.by_policy().get("cosmolocal")
    bound = (
        f"<p>Cosmolocal's plans: {cosmolocal['plans']} solves, {cosmolocal['plans_optimal']} proven optimal; "
        f"objective {cosmolocal['plan_objective']:,.0f} against a lower bound of "
        f"{cosmolocal['plan_bound']:,.0f} "
        f"(gap {cosmolocal['plan_gap']:.4%}). Every plan was checked by the independent validator.</p>"
        if cosmolocal
        else ""
    )
    sources = "".join(f"<li>{html.escape(s)}</li>" for s in scenario.sources)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in result.world.notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(scenario.title)} - Cosmolocal scenario report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1200px; color: #222;
  padding: 0 1rem; }}
h1 {{ font-size: 1.5rem; }} h2 {{ font-size: 1.15rem; margin-top: 2rem; }}
table.metrics {{ border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }}
table.metrics th, table.metrics td {{ border-bottom: 1px solid #ddd; padding: .3rem .6rem;
  text-align: right; }}
table.metrics th[scope=row], table.metrics thead th:first-child {{ text-align: left; font-weight: normal; }}
.muted {{ color: #666; font-size: .9rem; }}
</style></head>
<body>
<h1>{html.escape(scenario.title)}</h1>
<p>{html.escape(scenario.description.strip())}</p>
<p class="muted">Scenario <code>{html.escape(scenario.name)}</code>, seed {scenario.seed},
orders for {scenario.days:g} days from {scenario.start.date().isoformat()}, replayed until the last
one falls due ({_days(result.world):g} days), planning every {scenario.round_hours:g} h
(Cosmolocal may plan units up to {scenario.late_window_days:g} days after their due date);
{len(result.world.labs)} labs, {len(result.world.orders)} orders. Replayed in simulated time.</p>
<h2>Metrics per policy</h2>
{_metrics_table(result)}
{bound}
<p class="muted">Lead time: from an order being placed to the units' delivery (delivered units only).
Transport: great-circle km from lab to delivery point. CO2e: {html.escape(CO2_SOURCE)}.
The central factory has the same machines, stock and supply as all labs together, at
{html.escape(result.world.central.place or "one place")}.</p>
<h2>Rates: days until each need is met</h2>
<p class="muted">From the rate's start until the units delivered catch up with the units due, and
stay caught up to the end of the replay.</p>
{_rates_table(result)}
<h2>Map</h2>
<div id="map"></div>
<h2>Over time</h2>
<div id="timeline"></div>
<h2>Load per lab</h2>
<div id="load"></div>
{TRADE_SECTION if result.trade else ""}
<h2>Sources</h2>
<ul>{sources}</ul>
{f"<ul class='muted'>{notes}</ul>" if notes else ""}
<p class="muted">Country outlines: Natural Earth 1:110m (public domain) via the world-atlas package (ISC).
Cities: GeoNames (CC BY 4.0).</p>
<script>window.PlotlyGeoAssets = {{topojson: {{"{TOPOJSON_NAME}": {world_topojson()}}}}};</script>
<script>{get_plotlyjs()}</script>
<script>
var CONFIG = {{responsive: true, displaylogo: false, topojsonURL: "./"}};
{data}
{calls}
</script>
</body></html>
"""


def write_report(result: ScenarioResult, path: Path) -> None:
    """Write the report file (parent folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(result), encoding="utf-8")
