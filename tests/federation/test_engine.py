"""The priced contract net in one process: rounds, commit rule, trades, plans and what leaves a region."""

from __future__ import annotations

from dataclasses import replace

import pytest

from scenarios.federation import federation
from solver.federation.cells import cell_centre, cell_of
from solver.federation.market import Bid, Offer, Trade
from solver.federation.net import NetParams, award_bids, run_net, within_means
from solver.federation.plans import LEASE_PREFIX, integer_check, plan_region, with_trades, without_covered
from solver.federation.region import RegionModel, Solution
from solver.model.problem import SolveParams
from tests.federation.leaks import leaks, private_values

PARAMS = SolveParams(late_window_days=2.0, time_limit_s=5.0)


@pytest.fixture(scope="module")
def surge():
    regions = federation(3, 60, 12, seed=3, case="surge")
    return regions, run_net({r.id: r.problem for r in regions}, PARAMS)


def test_the_surge_is_served_by_peers_and_every_commit_lowers_the_summed_cost(surge) -> None:
    regions, result = surge
    assert result.federated_cost < 0.5 * result.isolated_cost  # the surging region was short by half
    assert 1 <= len(result.rounds) <= NetParams().max_rounds
    committed = [r for r in result.rounds if r.committed]
    assert committed, "no round committed"
    for r in committed:
        assert r.total_after < r.total_before
    for r in result.rounds:
        if not r.committed:
            assert r.bids == 0 or r.total_after >= r.total_before * (1 - 1e-6)
    imported = {r.id: sum(t.units for t in result.trades if t.origin == r.id) for r in regions}
    assert max(imported, key=imported.get) == regions[0].id  # the surging region imports the most
    assert all(t.host != t.origin for t in result.trades)


def test_no_order_lab_or_exact_point_leaves_a_region(surge) -> None:
    regions, result = surge
    ids, coordinates = private_values(regions)
    assert result.messages
    kinds = {m.kind for m in result.messages}
    assert {"OFFER", "BID", "AWARD", "COST", "VOTE", "COMMIT"} <= kinds
    for message in result.messages:
        assert leaks(message.body, ids, coordinates) == [], message


def test_plans_with_trades_are_valid_and_account_for_every_traded_unit(surge) -> None:
    regions, result = surge
    traded = sum(t.units for t in result.trades)
    covered = 0
    leased = 0
    for region in regions:
        regional = plan_region(region.id, region.problem, result.trades, PARAMS)
        assert regional.violations == []
        covered += sum(regional.covered.values())
        leased += sum(d.quantity for d in regional.problem.demands if d.order.id.startswith(LEASE_PREFIX))
    assert covered == traded == leased


def test_a_trade_for_units_a_region_does_not_have_is_refused(surge) -> None:
    regions, result = surge
    trade = result.trades[0]
    too_many = replace(trade, units=10**6)
    with pytest.raises(ValueError, match="has only"):
        origin = next(r for r in regions if r.id == trade.origin)
        with_trades(origin.id, origin.problem, [too_many], PARAMS)


def test_cells_lose_the_exact_point_and_name_bad_input() -> None:
    from protocol.model import Location

    place = Location(lat=45.4642, lon=9.19)
    centre = cell_centre(cell_of(place))
    assert cell_of(centre) == cell_of(place)
    assert (centre.lat, centre.lon) != (place.lat, place.lon)
    with pytest.raises(ValueError, match="cell"):
        cell_centre("45.2")


def test_net_params_name_the_bad_field() -> None:
    with pytest.raises(ValueError, match="max_rounds"):
        NetParams(max_rounds=0)
    with pytest.raises(ValueError, match="regions"):
        run_net({}, PARAMS)


def test_every_message_of_the_net_passes_the_peer_codec(surge) -> None:
    from protocol.peers import decode_peer, encode_peer

    _, result = surge
    for n, message in enumerate(result.messages, start=1):
        decoded = decode_peer(encode_peer(message.kind, message.sender, n, 0, message.body))
        assert decoded.kind == message.kind and decoded.sender == message.sender


def test_bad_peer_frames_name_the_field() -> None:
    from protocol.errors import ProtocolError
    from protocol.peers import decode_peer, encode_peer

    good = {"round": 1, "cost": 5.0}
    with pytest.raises(ProtocolError, match="cost"):
        encode_peer("COST", "lombardy", 1, 0, {"round": 1, "cost": -1.0})
    with pytest.raises(ProtocolError, match="order_id"):
        encode_peer("BID", "lombardy", 1, 0, {**good, "order_id": "o1"})
    with pytest.raises(ProtocolError, match="kind"):
        encode_peer("ORDER", "lombardy", 1, 0, good)
    with pytest.raises(ProtocolError, match="msgpack"):
        decode_peer(b"\xc1")
    frame = encode_peer("COST", "lombardy", 1, 0, good)
    assert decode_peer(frame).body.model_dump(include=set(good)) == good


def _offer(window: int, units: int, design: str = "face-shield", cell: str = "90:18") -> Offer:
    return Offer(f"host.r1.o{window}{design[:2]}", "host", 1, design, window, cell, units, 10.0)


def _bid(n: int, offer: Offer, units: int, max_price: float, cell: str = "90:18") -> Bid:
    return Bid(
        f"origin.r1.b{n}",
        "origin",
        "host",
        offer.offer_id,
        1,
        units,
        offer.window,
        cell,
        max_price,
        "routine",
    )


def test_awards_of_one_cell_share_its_capacity_across_windows_and_designs() -> None:
    # Capacity by day 4 includes that by day 2, and both designs take the same printers: 10 units by
    # day 2 and 20 by day 4 of one cell cannot be sold as 10 + 20 + 20.
    early, late, splint = _offer(2, 10), _offer(4, 20), _offer(4, 20, design="finger-splint")
    offers = {o.offer_id: o for o in (early, late, splint)}
    bids = [_bid(0, early, 10, 500.0), _bid(1, late, 20, 400.0), _bid(2, splint, 20, 300.0)]
    trades = award_bids(bids, offers, 1.0, 1, 0)
    by_bid = {t.trade_id.split(".", 1)[1]: t.units for t in trades}
    # The day-2 bid takes all of day 2 and half of day 4; the day-4 one takes the other half.
    assert by_bid == {"origin.r1.b0": 10, "origin.r1.b1": 10}
    # The old rule, each offer within its own units, sold 10 + 20 + 20.
    assert sum(by_bid.values()) == 20


def test_a_host_serves_first_the_bid_that_leaves_it_the_most_after_carriage() -> None:
    # The far origin values the unit 50 more, but its cell is 4 cells (about 200 km) further.
    offer = _offer(4, 10)
    near, far = _bid(0, offer, 10, 450.0, cell="90:19"), _bid(1, offer, 10, 500.0, cell="90:22")
    trades = award_bids([far, near], {offer.offer_id: offer}, 1.0, 1, 0)
    assert [(t.cell, t.units) for t in trades] == [("90:19", 10)]


def test_a_plan_less_the_covered_units_drops_late_units_first_and_stays_valid(surge) -> None:
    regions, result = surge
    origin = regions[0]
    alone = plan_region(origin.id, origin.problem, [], PARAMS)
    traded, covered, _ = with_trades(origin.id, origin.problem, result.trades, PARAMS)
    assert covered
    warm = without_covered(alone.plan, covered)
    before: dict[str, int] = {}
    after: dict[str, int] = {}
    late_before: dict[str, int] = {}
    late_after: dict[str, int] = {}
    for plan, units, late in ((alone.plan, before, late_before), (warm, after, late_after)):
        for a in plan.allocations:
            units[a.order_id] = units.get(a.order_id, 0) + a.quantity
            late[a.order_id] = late.get(a.order_id, 0) + a.late_units
    for order_id, units in before.items():
        taken = units - after.get(order_id, 0)
        assert taken == min(units, covered.get(order_id, 0))
        # Late units go before units on time.
        assert late_before[order_id] - late_after.get(order_id, 0) == min(taken, late_before[order_id])
    # What is left is a plan for the demands left: within each one's quantity.
    quantities = {d.order.id: d.quantity for d in traded.demands}
    assert all(after[o] <= quantities.get(o, 0) for o in after if after[o] > 0)


def test_the_final_check_keeps_trades_only_if_the_integer_plans_cost_no_more(surge) -> None:
    regions, result = surge
    alone = [plan_region(r.id, r.problem, [], PARAMS) for r in regions]
    cost = {p.region: p.plan.objective for p in alone}
    traded = [
        plan_region(
            r.id, r.problem, result.trades, PARAMS, warm_start=next(a.plan for a in alone if a.region == r.id)
        )
        for r in regions
    ]
    assert all(p.violations == [] for p in traded)
    # The surge's trades save far more than the integer plans' noise: they are kept.
    assert integer_check(alone, traded)
    assert sum(p.cost for p in traded) < 0.5 * sum(cost.values())
    # Plans with trades made dearer (by a carriage that no plan pays) are voided.
    dearer = [replace(p, carriage=p.carriage + sum(cost.values())) for p in traded]
    assert not integer_check(alone, dearer)
    with pytest.raises(ValueError, match="same regions"):
        integer_check(alone, traded[:-1])


def test_offers_after_the_first_round_are_priced_at_the_plan_the_commit_rule_charges() -> None:
    """Every OFFER of round r >= 1 carries the host's shadow price in its plan with the trades
    committed by the end of round r and no import option (the plan whose cost the round's vote
    summed), not the price of its plan that could still import."""

    regions = federation(3, 60, 12, seed=3, case="surge")
    problems = {r.id: r.problem for r in regions}
    # One round: the offers sent after it are priced with the trades it committed, if any.
    result = run_net(problems, PARAMS, NetParams(max_rounds=2))
    assert result.rounds[0].committed
    first = result.rounds[0].round
    committed = [t for t in result.trades if t.round == first]
    sent = {
        (m.sender, m.body["cell"], m.body["design"], m.body["window"]): m.body["price"]
        for m in result.messages
        if m.kind == "OFFER" and m.body["round"] == first
    }
    assert sent
    for region in regions:
        model = RegionModel(region.id, region.problem, PARAMS)
        plan = model.solve(
            imports=[t for t in committed if t.origin == region.id],
            exports=[t for t in committed if t.host == region.id],
        )
        for offer in model.offers(plan, first):
            assert sent[region.id, offer.cell, offer.design, offer.window] == offer.price


def _host_of_a_trade(surge) -> tuple[RegionModel, Solution, Trade, float]:
    """The host of the surge's first trade, with its plan alone, that trade, and the price the host
    quotes for such units now."""
    regions, result = surge
    trade = result.trades[0]
    host = next(r for r in regions if r.id == trade.host)
    model = RegionModel(host.id, host.problem, PARAMS)
    standing = model.solve()
    return model, standing, trade, standing.prices[trade.source, trade.design, trade.window]


def test_a_host_cuts_awards_it_cannot_make_without_leaving_units_short(surge) -> None:
    """`within_means` halves a host's awards until its plan with them leaves no more units short
    than without; awards it can make at the price it quotes pass whole."""
    model, standing, trade, quoted = _host_of_a_trade(surge)
    small = [replace(trade, trade_id="t9.small", units=1, price=quoted)]
    assert within_means(model, standing, [], [], small) == small
    huge = [replace(trade, trade_id="t9.huge", units=1_000_000, price=quoted)]
    cut = within_means(model, standing, [], [], huge)
    assert cut == [] or cut[0].units < 1_000_000
    for t in cut:
        assert model.solve(exports=[t]).short_units <= standing.short_units + 0.5


def test_a_host_answers_only_what_it_can_make_at_the_cost_it_quoted(surge) -> None:
    """An award the host can make, but only by giving up more than its quote (its own orders made
    late or farther), is cut until what is left costs the host no more than the quote promised."""
    model, standing, trade, quoted = _host_of_a_trade(surge)
    tolerance = 1e-6 * standing.cost
    asked = []
    for times in (4, 16, 64, 256):
        award = replace(trade, trade_id="t9.asked", units=times * trade.units, price=quoted)
        made = model.solve(exports=[award])
        if made.short_units <= standing.short_units and (
            made.cost - standing.cost > model.quoted_cost([award]) + tolerance
        ):
            asked = [award]
            break
    assert asked, "some award beyond the host's spare room costs it more than its quote"
    kept = within_means(model, standing, [], [], asked)
    assert sum(t.units for t in kept) < asked[0].units
    for t in kept:
        assert model.solve(exports=[t]).cost - standing.cost <= model.quoted_cost([t]) + tolerance


def test_a_hosted_trade_can_be_made_in_the_cell_whose_offer_it_answers(surge) -> None:

    regions, result = surge
    trade = result.trades[0]
    host = next(r for r in regions if r.id == trade.host)
    model = RegionModel(host.id, host.problem, PARAMS, own_cells=1)
    near = model.near_cells(trade.design, cell_centre(trade.cell))
    others = [c for c in model.supply if trade.design in model.supply[c].can_make and c != near[0][0]]
    assert others, "the test needs a host with two cells able to make the design"
    far = replace(trade, source=others[0])
    assert [c for c, _ in model.export_cells(far)] == [near[0][0], others[0]]
    assert "source" not in far.body()  # the host's own record: not in what SNAPSHOT sends


def test_a_host_that_could_not_make_its_awards_offers_less_of_those_cells() -> None:
    """`trimmed_shares` scales the busy share of the cells whose awards were cut by the share kept
    (to zero when none was), leaves other cells alone, and changes nothing when every award holds."""
    from solver.federation.net import trimmed_shares

    def trade(cell: str, units: int) -> Trade:
        return Trade(
            trade_id=f"t.{cell}.{units}",
            host="h",
            origin="o",
            design="d",
            window=2,
            cell="c0",
            units=units,
            price=1.0,
            round=1,
            priority="routine",
            source=cell,
        )

    asked = [trade("a", 30), trade("b", 10)]
    assert trimmed_shares({}, asked, asked, 0.25) == {}
    half = [trade("a", 15), trade("b", 5)]
    assert trimmed_shares({"z": 0.1}, asked, half, 0.25) == {"z": 0.1, "a": 0.125, "b": 0.125}
    assert trimmed_shares({"a": 0.125}, asked, [], 0.25) == {"a": 0.0, "b": 0.0}


def test_offers_of_a_trimmed_cell_keep_only_what_is_spare(surge) -> None:
    """A cell whose busy share is trimmed to zero still offers what its plan leaves spare, and no
    unit of capacity its own orders use; other cells offer as before."""
    import math

    from solver.federation.region import OFFER_SHARE

    regions, _ = surge
    host = regions[0]
    model = RegionModel(host.id, host.problem, PARAMS)
    plan = model.solve()
    before = {(o.cell, o.design, o.window): o.units for o in model.offers(plan, 1)}
    cell = next(iter(before))[0]
    after = {(o.cell, o.design, o.window): o.units for o in model.offers(plan, 1, OFFER_SHARE, {cell: 0.0})}
    for key, units in before.items():
        if key[0] != cell:
            assert after[key] == units
            continue
        spare = math.floor(plan.spare[key])
        assert after.get(key, 0) == (spare if spare >= 1 else 0)
        assert after.get(key, 0) <= units


def test_a_group_sees_a_hosts_cheapest_offers_landed_not_only_its_nearest() -> None:
    """Among one host's offers, a group's import options are the IMPORT_CELLS that cost least
    landed (price, carriage and days in transit): a far cell with spare machines at a low price is
    among them though nearer cells, busy and dear, are more than IMPORT_CELLS."""
    from protocol.model import Location
    from solver.federation.region import IMPORT_CELLS, _cheapest_offers

    place = Location(lat=45.1, lon=9.1)
    near = [Offer(f"h.r1.o{i}", "h", 1, "d", 2, f"90:{18 + i}", 5, 5_000.0) for i in range(IMPORT_CELLS + 2)]
    far = Offer("h.r1.far", "h", 1, "d", 2, "94:28", 50, 1.0)  # about 250 km off, nearly free
    chosen = _cheapest_offers([*near, far], place, 1.0, 0.5, PARAMS, 1.0)
    assert len(chosen) == IMPORT_CELLS
    assert far in [offer for offer, _ in chosen]
    km = dict((offer.offer_id, km) for offer, km in chosen)
    assert all(km[far.offer_id] > km[o.offer_id] for o in near if o.offer_id in km)
