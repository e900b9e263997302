"""The peer transport between real planner processes: keys, offers, heartbeats, expiry, refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zmq

from planner.peer_serve import read_capture
from planner.peers import add_peer, peer_keys, remove_peer
from protocol import security
from protocol.peers import decode_peer, encode_peer
from scenarios.federation import federation
from solver.federation.net import run_net
from solver.model.problem import SolveParams
from tests.federation.leaks import leaks, private_values
from tests.nodes.fake_planner import free_port

pytestmark = pytest.mark.e2e
HEARTBEAT_S = 0.2


def wait_until(predicate: Callable[[], Any], what: str, timeout_s: float = 30.0) -> Any:
    """Wait for `predicate` to hold (checked on an event's clock, not a bare sleep); fail naming `what`."""
    deadline = time.monotonic() + timeout_s
    tick = threading.Event()
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        tick.wait(0.05)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def read_status(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


@pytest.fixture(scope="module")
def offers() -> list[dict[str, Any]]:
    """Real offers from the engine's first round, as the host would send them."""
    regions = federation(2, 40, 10, seed=5, case="surge")
    result = run_net({r.id: r.problem for r in regions}, SolveParams(late_window_days=2.0))
    return [m.body for m in result.messages if m.kind == "OFFER"][:20], regions


@pytest.fixture
def pair(tmp_path: Path, offers):
    """Two peer planners, alpha (publishing offers) and beta, admitted to each other, as processes."""
    bodies, _ = offers
    dirs = {name: tmp_path / name for name in ("alpha", "beta")}
    ports = {name: free_port() for name in dirs}
    for name, folder in dirs.items():
        peer_keys(folder, name)
    add_peer(dirs["alpha"], dirs["beta"] / "peer.key", f"tcp://127.0.0.1:{ports['beta']}")
    add_peer(dirs["beta"], dirs["alpha"] / "peer.key", f"tcp://127.0.0.1:{ports['alpha']}")
    offers_file = tmp_path / "offers.json"
    offers_file.write_text(json.dumps(bodies), encoding="utf-8")
    processes = {}
    for name, folder in dirs.items():
        command = [
            sys.executable, "-m", "cosmolocal", "planner", "peer", "serve",
            "--region", name, "--keys", str(folder), "--endpoint", f"tcp://127.0.0.1:{ports[name]}",
            "--heartbeat", str(HEARTBEAT_S), "--status", str(tmp_path / f"{name}.json"),
            "--capture", str(tmp_path / f"{name}.frames"),
        ]  # fmt: skip
        if name == "alpha":
            command += ["--offers", str(offers_file)]
        processes[name] = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    yield tmp_path, dirs, ports, processes
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_offers_cross_and_a_killed_peer_is_lost_and_its_offers_expire(pair, offers) -> None:
    tmp_path, _, _, processes = pair
    bodies, _ = offers
    beta = tmp_path / "beta.json"
    held = wait_until(
        lambda: (
            len(read_status(beta).get("offers", {}).get("alpha", [])) == len(bodies) and read_status(beta)
        ),
        "beta to hold alpha's offers",
    )
    assert held["live"] == ["alpha"]
    os.kill(processes["alpha"].pid, signal.SIGKILL)
    processes["alpha"].wait()
    after = wait_until(
        lambda: "alpha" in read_status(beta).get("lost", []) and read_status(beta), "alpha lost"
    )
    assert after["offers"] == {}
    assert after["stats"]["offers_expired"] == len(bodies)
    assert after["stats"]["peers_lost"] >= 1


def test_every_frame_that_leaves_a_region_is_free_of_orders_labs_and_exact_points(pair, offers) -> None:
    tmp_path, _, _, _ = pair
    _, regions = offers
    wait_until(lambda: len(read_status(tmp_path / "beta.json").get("offers", {}).get("alpha", [])), "offers")
    frames = read_capture(tmp_path / "alpha.frames")
    kinds = {decode_peer(f).kind for f in frames}
    assert {"OFFER", "HEARTBEAT", "PEER_HELLO"} <= kinds
    ids, coordinates = private_values(regions)
    for frame in frames:
        message = decode_peer(frame)
        assert leaks(message.body.model_dump(mode="json"), ids, coordinates) == []
        assert leaks(frame, ids, set()) == []


def test_strangers_malformed_frames_and_impersonation_are_refused_and_counted(pair, tmp_path: Path) -> None:
    _, dirs, ports, _ = pair
    beta = tmp_path / "beta.json"
    wait_until(lambda: read_status(beta).get("live") == ["alpha"], "beta up with alpha live")
    beta_key = security.load_public(dirs["beta"] / "peer.key")
    ctx = zmq.Context()
    try:
        # A stranger: a key beta never admitted. The handshake fails; nothing reaches beta.
        stranger = security.create_keypair(tmp_path / "stranger", "peer", {"region": "stranger"})
        sock = _client(
            ctx, security.load_keypair(stranger.with_suffix(".key_secret")), beta_key, ports["beta"]
        )
        sock.send(encode_peer("HEARTBEAT", "stranger", 1, 0, {"round": 0}))
        wait_until(lambda: read_status(beta).get("keys_refused", 0) >= 1, "the stranger's key refused")
        # An admitted peer (gamma) sending garbage, then claiming to be alpha.
        peer_keys(tmp_path / "gamma", "gamma")
        add_peer(dirs["beta"], tmp_path / "gamma" / "peer.key", "tcp://127.0.0.1:9")
        gamma = _client(
            ctx, security.load_keypair(tmp_path / "gamma" / "peer.key_secret"), beta_key, ports["beta"]
        )
        gamma.send(b"\xc1 not msgpack")
        gamma.send(encode_peer("HEARTBEAT", "gamma", 1, 0, {"round": 0})[:-1])
        wait_until(
            lambda: read_status(beta)["stats"]["frames_malformed"] >= 2, "two malformed frames counted"
        )
        gamma.send(encode_peer("HEARTBEAT", "alpha", 2, 0, {"round": 0}))
        wait_until(lambda: read_status(beta)["stats"]["impersonations"] >= 1, "the impersonation counted")
        status = read_status(beta)
        assert status["stats"]["malformed_by_peer"].get("gamma", 0) >= 2
        assert "stranger" not in status["stats"]["malformed_by_peer"]
        assert remove_peer(dirs["beta"], "gamma")
        assert not remove_peer(dirs["beta"], "gamma")
    finally:
        ctx.destroy(linger=0)


def _client(ctx: zmq.Context, own: security.KeyPair, server: bytes, port: int) -> zmq.Socket:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    security.make_client(sock, security.ClientKeys(own, server))
    sock.connect(f"tcp://127.0.0.1:{port}")
    return sock


def test_peer_add_names_a_bad_endpoint(tmp_path: Path) -> None:
    from planner.peers import PeerError

    peer_keys(tmp_path / "a", "a")
    with pytest.raises(PeerError, match="endpoint"):
        add_peer(tmp_path / "b", tmp_path / "a" / "peer.key", "udp://x")
