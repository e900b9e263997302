"""A region's LP laid out as arrays solves as the same LP written call by call through pywraplp.

The reference below writes the region's LP the way the net first did, one `NumVar`, `Constraint`
and `SetCoefficient` at a time, from the model's own data (groups, near cells, supply, offers,
trades). The array layout (`solver.federation.region_lp`) must give the same optimum: the same cost,
units short, imports bought and units made for each hosted trade, with and without offers, imports
and exports.
"""

from __future__ import annotations

import math

import pytest
from ortools.linear_solver import pywraplp

from scenarios.federation import federation
from solver.federation.market import Offer, Trade
from solver.federation.net import run_net
from solver.federation.region import (
    LATE_CELLS,
    RegionModel,
    _cheapest_offers,
    _demand_after_imports,
    _landed,
    _offers_by_design_window,
)
from solver.model.objective import overdue_weight
from solver.model.problem import Problem, SolveParams

PARAMS = SolveParams(late_window_days=2.0, time_limit_s=5.0)


def reference(
    model: RegionModel, offers: list[Offer], imports: list[Trade], exports: list[Trade]
) -> dict[str, float]:
    """The region's LP written call by call; its cost (less what imports pay), units short, units
    bought and units made for trades."""
    solver = pywraplp.Solver.CreateSolver("GLOP")
    inf = solver.infinity()
    p = model.params
    rows: dict[tuple, pywraplp.Constraint] = {}
    for cell, supply in model.supply.items():
        for cls, by_window in supply.minutes.items():
            before = None
            for w in sorted(by_window):
                used = solver.NumVar(0.0, by_window[w], "")
                row = solver.Constraint(0.0, 0.0)
                row.SetCoefficient(used, -1.0)
                if before is not None:
                    row.SetCoefficient(before, 1.0)
                before = used
                rows[cell, cls, w] = row
        for material, amount in supply.stock.items():
            rows[cell, material] = solver.Constraint(-inf, amount)
    objective = solver.Objective()

    def use(var: pywraplp.Variable, cell: str, design: str, window: int | None) -> None:
        for key, coefficient in model._coefficients(cell, design, window):
            rows[key].SetCoefficient(var, coefficient)

    offer_rows = {o.offer_id: solver.Constraint(0.0, o.units) for o in offers}
    offers_by = _offers_by_design_window(offers)
    left = _demand_after_imports(model.groups, imports)
    shorts, paid, bought, made = [], [], [], []
    for gi, g in enumerate(model.groups):
        row = solver.Constraint(left[gi], left[gi])
        tw = p.time_weight[g.priority]
        short = solver.NumVar(0.0, inf, "")
        shorts.append(short)
        row.SetCoefficient(short, 1.0)
        objective.SetCoefficient(short, p.shortage_penalty[g.priority])
        if left[gi] <= 0:
            continue
        for rank, (cell, km) in enumerate(model.near[gi]):
            on = solver.NumVar(0.0, inf, "")
            row.SetCoefficient(on, 1.0)
            objective.SetCoefficient(on, _landed(p, km, tw, g.window))
            use(on, cell, g.design, g.window)
            if rank < LATE_CELLS:
                late = solver.NumVar(0.0, inf, "")
                row.SetCoefficient(late, 1.0)
                past_due = overdue_weight(p.time_weight, g.priority) * max(0.0, model.horizon - g.window)
                cost = p.km_weight * km + p.lateness_penalty[g.priority] + tw * model.horizon + past_due
                objective.SetCoefficient(late, cost)
                use(late, cell, g.design, None)
        usable = offers_by.get((g.design, g.window), [])
        for offer, km in _cheapest_offers(usable, g.location, g.window, model.cell_deg, p, tw):
            z = solver.NumVar(0.0, inf, "")
            row.SetCoefficient(z, 1.0)
            offer_rows[offer.offer_id].SetCoefficient(z, 1.0)
            objective.SetCoefficient(z, offer.price + _landed(p, km, tw, g.window))
            paid.append((z, offer.price + p.km_weight * km))
            bought.append(z)
    for trade in exports:
        row = solver.Constraint(trade.units, trade.units)
        short = solver.NumVar(0.0, inf, "")
        shorts.append(short)
        row.SetCoefficient(short, 1.0)
        objective.SetCoefficient(short, p.shortage_penalty[trade.priority])
        tw = p.time_weight[trade.priority]
        for cell, km in model.export_cells(trade):
            make = solver.NumVar(0.0, inf, "")
            row.SetCoefficient(make, 1.0)
            objective.SetCoefficient(make, _landed(p, km, tw, trade.window))
            use(make, cell, trade.design, trade.window)
            made.append(make)
    objective.SetMinimization()
    assert solver.Solve() == pywraplp.Solver.OPTIMAL
    return {
        "cost": objective.Value() - sum(v.solution_value() * money for v, money in paid),
        "short": sum(v.solution_value() for v in shorts),
        "bought": sum(v.solution_value() for v in bought),
        "made": sum(v.solution_value() for v in made),
    }


@pytest.fixture(scope="module")
def surge():
    regions = federation(3, 60, 12, seed=5, case="surge")
    return regions, run_net({r.id: r.problem for r in regions}, PARAMS)


def _figures(solution) -> dict[str, float]:  # type: ignore[no-untyped-def]
    return {
        "cost": solution.cost,
        "short": solution.short_units,
        "bought": sum(solution.imports.values()),
        "made": sum(u for by_cell in solution.made.values() for u in by_cell.values()),
    }


def test_alone_with_offers_and_with_trades_the_layout_solves_as_the_calls_do(surge) -> None:
    regions, net = surge
    assert net.trades, "the surge traded nothing: the trades below would test nothing"
    models = {r.id: RegionModel(r.id, r.problem, PARAMS) for r in regions}
    alone = {r: m.solve() for r, m in models.items()}
    book = [o for r, m in models.items() for o in m.offers(alone[r], 1)]
    compared = 0
    for region, model in models.items():
        offers = [o for o in book if o.host != region]
        imports = [t for t in net.trades if t.origin == region]
        exports = [t for t in net.trades if t.host == region]
        for given in ({}, {"offers": offers}, {"imports": imports, "exports": exports}):
            ours = _figures(model.solve(**given))
            theirs = reference(
                model, given.get("offers", []), given.get("imports", []), given.get("exports", [])
            )
            for key in ours:
                expected = pytest.approx(theirs[key], rel=1e-7, abs=1e-6)
                assert ours[key] == expected, (region, sorted(given), key)
            compared += 1
    assert compared == 9
    # The instance exercises what the layout adds: some region bought, some made a trade.
    assert any(
        sum(models[r].solve(offers=[o for o in book if o.host != r]).imports.values()) > 0 for r in models
    )


def test_a_region_with_no_demand_left_still_prices_its_capacity() -> None:
    regions = federation(2, 20, 6, seed=2, case="tight")
    model = RegionModel(regions[0].id, regions[0].problem, PARAMS)
    everything = [
        Trade(
            trade_id=f"t{gi}",
            origin="elsewhere",
            host=model.region,
            round=1,
            units=g.units,
            window=g.window,
            cell=g.cell,
            design=g.design,
            priority=g.priority,
            price=0.0,
        )
        for gi, g in enumerate(model.groups)
    ]
    covered = model.solve(imports=everything)
    assert covered.short_units == pytest.approx(0.0)
    assert covered.cost == pytest.approx(0.0, abs=1e-6)  # nothing left to make
    assert covered.prices and all(math.isfinite(v) and v >= 0 for v in covered.prices.values())


def test_a_region_with_no_orders_of_its_own_makes_a_trade_as_the_calls_do() -> None:
    # A host whose own region has no orders (no demand group at all) still lays out and solves its
    # LP for the trades it makes.
    regions = federation(2, 20, 6, seed=2, case="surge")
    source = regions[1].problem
    idle = Problem(now=source.now, designs=source.designs, labs=source.labs, demands=[])
    model = RegionModel("idle", idle, PARAMS)
    assert model.groups == []
    cell, supply = next((c, s) for c, s in model.supply.items() if s.can_make)
    trade = Trade(
        trade_id="t1",
        host="idle",
        origin="busy",
        design=sorted(supply.can_make)[0],
        window=3,
        cell=cell,
        units=5,
        price=0.0,
        round=1,
        source=cell,
    )
    assert _figures(model.solve()) == pytest.approx(reference(model, [], [], []))
    made = _figures(model.solve(exports=[trade]))
    assert made == pytest.approx(reference(model, [], [], [trade]), rel=1e-7, abs=1e-6)
    assert made["made"] + made["short"] == pytest.approx(5.0)
