"""The orders a chaos run places: seeded, and within what the labs' stock can make."""

from __future__ import annotations

from datetime import UTC, datetime

from protocol.okh import catalogue
from scenarios.demo import demo_labs
from scenarios.faults.chaos import STOCK_SHARE, _orders, _units_in_stock

NOW = datetime(2026, 12, 3, tzinfo=UTC)


def test_orders_never_need_more_than_a_share_of_the_labs_stock_per_design() -> None:
    labs = demo_labs(10, seed=11)
    orders = _orders(60, labs, 11, NOW)
    assert orders == _orders(60, labs, 11, NOW)
    designs = catalogue()
    for design in {o["design"] for o in orders}:
        wanted = sum(o["quantity"] for o in orders if o["design"] == design)
        assert wanted <= STOCK_SHARE * _units_in_stock(labs, designs[design]), design
    # Without the cap, a third of 60 orders (2 to 4 valves each) would need more resin than there is.
    assert sum(1 for o in orders if o["design"] == "charlotte-valve") < 20


def test_a_mesh_without_resin_gets_no_valve_orders() -> None:
    labs = [lab.model_copy(update={"stock": {**lab.stock, "resin": 0.0}}) for lab in demo_labs(8, seed=3)]
    orders = _orders(30, labs, 3, NOW)
    assert len(orders) == 30 and all(o["design"] != "charlotte-valve" for o in orders)
