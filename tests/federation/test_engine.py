"""The priced contract net in one process: rounds, commit rule, trades, plans and what leaves a region."""

from __future__ import annotations

from dataclasses import replace

import pytest

from scenarios.federation import federation
from solver.federation.cells import cell_centre, cell_of
from solver.federation.net import NetParams, run_net
from solver.federation.plans import LEASE_PREFIX, plan_region, with_trades
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
