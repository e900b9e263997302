"""CurveZMQ on a real planner: admitted labs join; strangers, plain sockets and impersonators do not."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import zmq
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cosmolocal.cli import app as cli
from nodes.agent import LabAgent
from planner.admission import Admissions, planner_keys
from planner.app import PlannerSettings, create_app
from protocol import transport
from protocol.codec import decode, encode
from protocol.messages import Envelope, Heartbeat, Hello
from protocol.security import ClientKeys, KeyPair, create_keypair, load_keypair, load_public, metadata
from tests.planner.test_mesh import LAB


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    return tmp_path / "keys"


@pytest.fixture
def secure(settings: PlannerSettings, keys_dir: Path) -> Iterator[tuple[TestClient, PlannerSettings]]:
    planner_keys(keys_dir)
    secured = replace(settings, keys_dir=keys_dir)
    with TestClient(create_app(secured)) as client:
        yield client, secured


def _lab_keys(tmp_path: Path, lab_id: str, keys_dir: Path, admit: bool = True) -> KeyPair:
    public = create_keypair(tmp_path / "labs", lab_id, {"lab-id": lab_id})
    if admit:
        Admissions(keys_dir / "admitted").admit(public)
    return load_keypair(public.with_suffix(".key_secret"))


def _client_keys(own: KeyPair, keys_dir: Path) -> ClientKeys:
    return ClientKeys(own=own, server_public=load_public(keys_dir / "planner.key"))


def _dealer(ctx: zmq.Context, endpoint: str, lab_id: str, curve: ClientKeys | None) -> zmq.Socket:
    return transport.connect_dealer(ctx, endpoint, lab_id, curve)


def _health_until(client: TestClient, key: str, at_least: int, timeout_s: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout_s
    health = client.get("/health").json()
    while health[key] < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
        health = client.get("/health").json()
    return health


def test_an_admitted_lab_agent_joins_over_curve(
    secure: tuple[TestClient, PlannerSettings], keys_dir: Path, tmp_path: Path
) -> None:
    client, settings = secure
    own = _lab_keys(tmp_path, LAB.id, keys_dir)
    stop = threading.Event()
    agent = LabAgent(LAB, settings.mesh_endpoint, curve=_client_keys(own, keys_dir))

    def run() -> None:
        async def main() -> None:
            done = asyncio.Event()
            task = asyncio.create_task(agent.run(done))
            while not stop.is_set():
                await asyncio.sleep(0.05)
            done.set()
            await task

        asyncio.run(main())

    thread = threading.Thread(target=run)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while client.get("/health").json()["labs_live"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        health = client.get("/health").json()
        assert health["labs_live"] == 1 and health["mesh_secure"] is True
        # The field arrives too (the PUB is a CURVE server as well), at its own pace: on a busy
        # machine its first frame can follow the WELCOME by a while.
        while agent.field is None and time.monotonic() < deadline + 10:
            time.sleep(0.05)
        assert agent.field is not None
    finally:
        stop.set()
        thread.join(10)


def test_strangers_and_plain_sockets_are_refused(
    secure: tuple[TestClient, PlannerSettings], keys_dir: Path, tmp_path: Path
) -> None:
    client, settings = secure
    ctx = zmq.Context()
    stranger_keys = _client_keys(_lab_keys(tmp_path, LAB.id, keys_dir, admit=False), keys_dir)
    stranger = _dealer(ctx, settings.mesh_endpoint, LAB.id, stranger_keys)
    plain = _dealer(ctx, settings.mesh_endpoint, LAB.id, None)
    try:
        for sock in (stranger, plain):
            sock.send(encode(Envelope(sender=LAB.id, seq=1, body=Hello(lab=LAB))), zmq.NOBLOCK)
    except zmq.Again:
        pass  # IMMEDIATE: no completed connection takes the message, which is the point
    assert not stranger.poll(1500) and not plain.poll(100)
    health = _health_until(client, "keys_refused", 1)
    assert health["keys_refused"] >= 1 and health["handshakes_failed"] >= 2
    assert health["labs_live"] == 0 and health["frames_received"] == 0
    for sock in (stranger, plain):
        sock.close(linger=0)
    ctx.term()


def test_a_known_key_claiming_another_lab_is_refused_and_the_lab_keeps_its_route(
    secure: tuple[TestClient, PlannerSettings], keys_dir: Path, tmp_path: Path
) -> None:
    client, settings = secure
    ctx = zmq.Context()
    real = _dealer(
        ctx, settings.mesh_endpoint, LAB.id, _client_keys(_lab_keys(tmp_path, LAB.id, keys_dir), keys_dir)
    )
    real.send(encode(Envelope(sender=LAB.id, seq=1, body=Hello(lab=LAB))))
    assert real.poll(5000) and decode(real.recv()).kind == "WELCOME"

    other_keys = _client_keys(_lab_keys(tmp_path, "lab-other", keys_dir), keys_dir)
    impostor = _dealer(ctx, settings.mesh_endpoint, LAB.id, other_keys)  # claims lab-test's id
    time.sleep(0.3)
    impostor.send(encode(Envelope(sender=LAB.id, seq=1, body=Hello(lab=LAB))))
    assert impostor.poll(5000)
    error = decode(impostor.recv())
    assert error.kind == "ERROR" and error.body.code == "invalid"
    assert _health_until(client, "impersonations_refused", 1)["impersonations_refused"] >= 1
    # The real lab still gets its own traffic: its heartbeat arrives on its connection.
    deadline = time.monotonic() + 5
    kinds = set()
    while "HEARTBEAT" not in kinds and time.monotonic() < deadline:
        if real.poll(200):
            kinds.add(decode(real.recv()).kind)
    assert "HEARTBEAT" in kinds
    assert client.get("/labs/lab-test").json()["live"] is True
    for sock in (real, impostor):
        sock.close(linger=0)
    ctx.term()


def test_a_lab_admitted_while_the_planner_runs_gets_in(
    secure: tuple[TestClient, PlannerSettings], keys_dir: Path, tmp_path: Path
) -> None:
    client, settings = secure
    ctx = zmq.Context()
    own = _lab_keys(tmp_path, LAB.id, keys_dir, admit=False)
    refused = _dealer(ctx, settings.mesh_endpoint, LAB.id, _client_keys(own, keys_dir))
    _health_until(client, "keys_refused", 1)
    refused.close(linger=0)
    result = CliRunner().invoke(
        cli, ["planner", "admit", str(tmp_path / "labs" / f"{LAB.id}.key"), "--keys", str(keys_dir)]
    )
    assert result.exit_code == 0 and f"admitted lab {LAB.id}" in result.output
    admitted = _dealer(ctx, settings.mesh_endpoint, LAB.id, _client_keys(own, keys_dir))
    admitted.send(encode(Envelope(sender=LAB.id, seq=1, body=Hello(lab=LAB))))
    assert admitted.poll(5000) and decode(admitted.recv()).kind == "WELCOME"
    admitted.close(linger=0)
    ctx.term()


def test_admit_and_node_keys_from_the_command_line(tmp_path: Path) -> None:
    runner = CliRunner()
    lab_file = tmp_path / "lyon.toml"
    init = ["node", "init", str(lab_file), "--id", "fablab-lyon", "--name", "Lyon", "-m", "p1:fdm"]
    made = runner.invoke(cli, [*init, "--lat", "45.7", "--lon", "4.8"])
    assert made.exit_code == 0, made.output
    assert metadata(tmp_path / "lyon.key") == {"lab-id": "fablab-lyon"}
    assert (tmp_path / "lyon.key_secret").stat().st_mode & 0o077 == 0  # owner only
    keys = tmp_path / "planner-keys"
    first = runner.invoke(cli, ["planner", "admit", str(tmp_path / "lyon.key"), "--keys", str(keys)])
    assert first.exit_code == 0 and (keys / "admitted" / "fablab-lyon.key").exists()
    clash = runner.invoke(
        cli, ["planner", "admit", str(tmp_path / "lyon.key"), "--lab", "fablab-nice", "--keys", str(keys)]
    )
    assert clash.exit_code == 2 and "already admitted for lab 'fablab-lyon'" in clash.output
    secret = runner.invoke(cli, ["planner", "admit", str(tmp_path / "lyon.key_secret"), "--keys", str(keys)])
    assert secret.exit_code == 0  # a secret file holds the public key too; only that is copied
    assert "secret-key" not in (keys / "admitted" / "fablab-lyon.key").read_text()
    missing_key = runner.invoke(cli, ["node", "join", str(lab_file)])
    assert missing_key.exit_code == 2 and "--planner-key missing" in missing_key.output
    revoked = runner.invoke(cli, ["planner", "revoke", "fablab-lyon", "--keys", str(keys)])
    assert revoked.exit_code == 0 and not (keys / "admitted" / "fablab-lyon.key").exists()


def test_a_revoked_key_is_cut_off_on_its_live_connection(
    secure: tuple[TestClient, PlannerSettings], keys_dir: Path, tmp_path: Path
) -> None:
    client, settings = secure
    ctx = zmq.Context()
    own = _client_keys(_lab_keys(tmp_path, LAB.id, keys_dir), keys_dir)
    live = _dealer(ctx, settings.mesh_endpoint, LAB.id, own)
    live.send(encode(Envelope(sender=LAB.id, seq=1, body=Hello(lab=LAB))))
    assert live.poll(5000) and decode(live.recv()).kind == "WELCOME"
    assert client.get("/labs/lab-test").json()["live"] is True

    result = CliRunner().invoke(cli, ["planner", "revoke", LAB.id, "--keys", str(keys_dir)])
    assert result.exit_code == 0
    # The connection stays open (ZeroMQ cannot close one peer of a ROUTER), but what comes on it is
    # dropped, and the lab is lost at once: not after its silence, nor at its next handshake.
    deadline = time.monotonic() + 5
    seq = 2
    while client.get("/labs/lab-test").json()["live"] and time.monotonic() < deadline:
        live.send(encode(Envelope(sender=LAB.id, seq=seq, body=Heartbeat())))
        seq += 1
        time.sleep(0.1)
    health = client.get("/health").json()
    assert client.get("/labs/lab-test").json()["live"] is False
    assert health["frames_revoked"] >= 1 and health["labs_live"] == 0
    # Nothing more reaches the revoked connection, and a new one is refused at the handshake.
    while live.poll(200):
        assert decode(live.recv()).kind == "HEARTBEAT"  # at most what was in flight
    live.send(encode(Envelope(sender=LAB.id, seq=seq, body=Hello(lab=LAB))))
    assert not live.poll(1500)
    again = _dealer(ctx, settings.mesh_endpoint, LAB.id, own)
    assert _health_until(client, "keys_refused", 1)["keys_refused"] >= 1
    for sock in (live, again):
        sock.close(linger=0)
    ctx.term()


def test_a_lab_admitted_again_with_a_new_key_leaves_its_old_connection_behind(
    secure: tuple[TestClient, PlannerSettings], keys_dir: Path, tmp_path: Path
) -> None:
    client, settings = secure
    ctx = zmq.Context()
    old = _dealer(
        ctx, settings.mesh_endpoint, LAB.id, _client_keys(_lab_keys(tmp_path, LAB.id, keys_dir), keys_dir)
    )
    old.send(encode(Envelope(sender=LAB.id, seq=1, body=Hello(lab=LAB))))
    assert old.poll(5000) and decode(old.recv()).kind == "WELCOME"
    # A new laptop: the lab makes a new key pair and the planner admits it in place of the old one.
    new_keys = create_keypair(tmp_path / "new", LAB.id, {"lab-id": LAB.id})
    Admissions(keys_dir / "admitted").admit(new_keys)
    time.sleep(0.6)  # the mesh reads the folder again within RECHECK_S
    new = _dealer(
        ctx,
        settings.mesh_endpoint,
        LAB.id,
        _client_keys(load_keypair(new_keys.with_suffix(".key_secret")), keys_dir),
    )
    new.send(encode(Envelope(sender=LAB.id, seq=1, body=Hello(lab=LAB))))
    assert new.poll(5000) and decode(new.recv()).kind == "WELCOME"
    old.send(encode(Envelope(sender=LAB.id, seq=2, body=Heartbeat())))
    assert _health_until(client, "frames_revoked", 1)["frames_revoked"] >= 1
    # The old connection's frame did not take the lab away from its new one.
    assert client.get("/labs/lab-test").json()["live"] is True
    deadline = time.monotonic() + 5
    kinds = set()
    while "HEARTBEAT" not in kinds and time.monotonic() < deadline:
        if new.poll(200):
            kinds.add(decode(new.recv()).kind)
    assert "HEARTBEAT" in kinds
    for sock in (old, new):
        sock.close(linger=0)
    ctx.term()
