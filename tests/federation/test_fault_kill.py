"""Kill -9 of a regional planner in the middle of a session of rounds, with real planners and labs.

Afterwards no trade is lost or doubled: every trade the survivors hold is held alike by both sides
(the killed one's ledger file is read as it was left), no order is covered beyond its quantity, the
survivors' plans all passed the validator, and the killed planner, started again on its ledger,
resyncs with the origin until both hold every trade alike.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import threading
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from scenarios.federation import federation
from scenarios.federation_demo import (
    federation_status,
    post_orders,
    region_orders,
    start_federation,
    stop_federation,
    wait_planned,
)
from tests.federation.test_peer_transport import wait_until

pytestmark = pytest.mark.e2e


def _ledger(path: Path) -> dict[str, tuple[Any, ...]]:
    """Trades as a planner's ledger file holds them: id -> (host, origin, units, state)."""
    with sqlite3.connect(path) as db:
        return {
            r[0]: r[1:] for r in db.execute("SELECT trade_id, host, origin, units, state FROM fed_trades")
        }


def _trades(status: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    return {t["trade_id"]: (t["host"], t["origin"], t["units"], t["state"]) for t in status["trades"]}


@pytest.mark.timeout(300)
def test_kill_9_of_a_peer_mid_session_loses_and_doubles_no_trade(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    regions = federation(3, 3, 1, seed=3, case="surge")
    # Lombardy's own lab is left out: every unit it is asked for must come from its peers, so the
    # session surely trades (with a lab, its planner may plan all of it late instead).
    regions[0] = replace(regions[0], problem=replace(regions[0].problem, labs=[]))
    meshes = start_federation(regions, tmp_path, speed=10_000.0, heartbeat_ms=500)
    try:
        now = datetime.now(UTC)
        for r in regions:
            post_orders(meshes[r.id], region_orders(r, now))
        wait_planned(meshes, time.monotonic() + 60)
        lombardy, rhone, swiss = meshes["lombardy"], meshes["rhone-alpes"], meshes["switzerland"]
        wait_until(lambda: len(federation_status(lombardy).get("live", [])) == 2, "lombardy hears both peers")
        first = federation_status(swiss)["round"]
        session: dict[str, Any] = {}

        def negotiate() -> None:
            with lombardy.client() as client:
                session.update(client.post("/federation/negotiate").json())

        thread = threading.Thread(target=negotiate)
        thread.start()
        # Switzerland is killed once it is inside the session's second bidding round (so the first
        # had bids: a round without any ends the session).
        wait_until(
            lambda: (federation_status(swiss).get("round") or 0) >= first + 3, "the session under way", 60
        )
        os.kill(swiss.mesh.planner.pid, signal.SIGKILL)
        killed_at = datetime.now(UTC)
        swiss.mesh.planner.wait()
        thread.join(timeout=120)
        assert not thread.is_alive()
        assert session.get("rounds"), session
        # The kill fell inside the session: the coordinator decided rounds of it after the kill.
        session_rounds = {r["round"] for r in session["rounds"]}
        decided = [r["at"] for r in federation_status(lombardy)["rounds"] if r["round"] in session_rounds]
        assert max(datetime.fromisoformat(at) for at in decided) > killed_at, (killed_at, decided)

        def survivors_settled() -> bool:
            # Between survivors nothing stays pending; an origin waits no longer than its lease wait
            # for a killed host. (A host waits for its killed origin's word: that comes on its return.)
            for status in (federation_status(lombardy), federation_status(rhone)):
                for host, origin, _, state in _trades(status).values():
                    if state == "pending" and (
                        "switzerland" not in (host, origin) or origin == status["region"]
                    ):
                        return False
            return True

        wait_until(survivors_settled, "the survivors' trades settled")
        at = {
            "lombardy": _trades(federation_status(lombardy)),
            "rhone-alpes": _trades(federation_status(rhone)),
        }
        assert "switzerland" in federation_status(lombardy)["lost"]
        # Between survivors: both sides hold each trade alike.
        for region, other in (("lombardy", "rhone-alpes"), ("rhone-alpes", "lombardy")):
            for trade_id, held in at[region].items():
                if other in held[:2]:
                    assert at[other].get(trade_id) == held, trade_id
        # With the killed peer: what an origin took, the host had committed (its file as left), and
        # what the killed origin took, its surviving host holds.
        at_swiss = _ledger(tmp_path / "switzerland" / "planner.db")
        for region in at:
            for trade_id, (host, _, units, state) in at[region].items():
                if host == "switzerland" and state == "leased":
                    assert trade_id in at_swiss and at_swiss[trade_id][2] >= units, trade_id
        for trade_id, (host, origin, _, state) in at_swiss.items():
            if origin == "switzerland" and state == "leased":
                assert at[host].get(trade_id, (None,) * 4)[3] in {"leased", "pending"}, trade_id
        # The survivors' plans all passed the independent validator (solver/check.py) before use.
        for region in (lombardy, rhone):
            health = httpx.get(region.mesh.api + "/health", timeout=10).json()
            assert health["plans_rejected"] == 0 and health["solve_failures"] == 0, health
        # No trade belongs to a round the coordinator did not commit.
        outcomes = {r["round"]: r["outcome"] for r in federation_status(lombardy)["rounds"]}
        for held in at.values():
            for trade_id in held:
                if re.search(r"\.e[0-9]+$", trade_id):  # the emergency fast path: no round, no vote
                    continue
                round_ = int(re.search(r"\.r([0-9]+)\.", trade_id).group(1))  # t.ORIGIN.rN.bM
                assert outcomes.get(round_) == "commit", (trade_id, outcomes)
        # Switzerland comes back on its ledger and resyncs: both sides end up holding every trade alike.
        swiss.mesh.restart_planner()

        def agreed() -> bool:
            # Every trade either side holds live (pending or leased), the other holds alike; a trade
            # void on one side may be unknown to the other (it never reached its ledger): no unit moves.
            theirs = federation_status(swiss)
            if not theirs:
                return False
            for peer in (lombardy, rhone):
                ours = {k: v for k, v in _trades(federation_status(peer)).items() if "switzerland" in v[:2]}
                mine = {k: v for k, v in _trades(theirs).items() if peer.region in v[:2]}
                for trade_id in ours.keys() | mine.keys():
                    a, b = ours.get(trade_id), mine.get(trade_id)
                    if (a[3] if a else "void") != (b[3] if b else "void"):
                        return False
                    if a and a[3] == "leased" and a != b:
                        return False
            return not any(v[3] == "pending" for v in _trades(theirs).values())

        wait_until(agreed, "switzerland and its peers to agree on their trades", 90)
        # No order of the origin is covered beyond its quantity.
        db = tmp_path / "lombardy" / "planner.db"
        with sqlite3.connect(db) as connection:
            quantity = dict(connection.execute("SELECT id, json_extract(record, '$.quantity') FROM orders"))
            covered: dict[str, int] = defaultdict(int)
            for (covers,) in connection.execute("SELECT covers FROM fed_trades WHERE state != 'void'"):
                for order_id, units in json.loads(covers).items():
                    covered[order_id] += units
        assert all(units <= quantity[o] for o, units in covered.items())
    finally:
        stop_federation(meshes)
