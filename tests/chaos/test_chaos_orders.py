"""The orders a chaos run places: seeded, and within what the labs' stock can make."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import httpx

from protocol.okh import catalogue
from scenarios.demo import demo_labs
from scenarios.faults.chaos import STOCK_SHARE, _orders, _post, _units_in_stock

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


def test_an_order_refused_for_back_pressure_is_posted_again_after_retry_after(tmp_path) -> None:
    """A 503 or 429 placed nothing and says when to come back: the harness does, with the same key."""
    seen: list[str] = []

    class Planner(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(self.headers["Idempotency-Key"])
            busy = len(seen) <= 2
            body = json.dumps({"detail": "busy"} if busy else {"id": "o-1"}).encode()
            self.send_response(503 if len(seen) == 1 else 429 if busy else 201)
            if busy:
                self.send_header("Retry-After", "1")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Planner)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    mesh = SimpleNamespace(api=f"http://127.0.0.1:{server.server_address[1]}")
    try:
        with httpx.Client(timeout=5.0) as http:
            assert _post(http, mesh, "key-1", {"design": "face-shield"}, timeout_s=30.0) == "o-1"  # type: ignore[arg-type]
    finally:
        server.shutdown()
    assert seen == ["key-1"] * 3
