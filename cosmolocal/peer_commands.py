"""`cosmolocal planner peer`: this planner's peer key, the fixed list of peer planners, and serving them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

peer_app = typer.Typer(
    name="peer",
    help="Peer planners of other regions, admitted by key (SPEC.md section 10).",
    no_args_is_help=True,
)

KeysOption = Annotated[Path, typer.Option(help="The planner's keys folder.")]


@peer_app.command("init")
def peer_init(
    region: Annotated[str, typer.Option(help="This planner's region id (e.g. lombardy).")],
    keys: KeysOption = Path("var/keys"),
) -> None:
    """Write this planner's peer key pair (`peer.key`, to hand to peers; `peer.key_secret`, kept)."""
    from planner.peers import peer_keys

    peer_keys(keys, region)
    typer.echo(f"peer key of region {region}: {keys / 'peer.key'} (give this file to your peers)")


@peer_app.command("add")
def peer_add(
    key_file: Annotated[Path, typer.Argument(metavar="PEER.key", help="The peer planner's peer.key file.")],
    endpoint: Annotated[str, typer.Option(help="The peer's ROUTER, tcp://HOST:PORT.")],
    region: Annotated[
        str | None, typer.Option(help="The peer's region [default: from its key file].")
    ] = None,
    keys: KeysOption = Path("var/keys"),
) -> None:
    """Admit a peer planner by its key and remember where it listens.

    Example: [bold]cosmolocal planner peer add lyon.key --endpoint tcp://lyon.example:5580[/]
    """
    from planner.admission import AdmissionError
    from planner.peers import PeerError, add_peer
    from protocol.security import KeyFileError

    try:
        name = add_peer(keys, key_file, endpoint, region)
    except (AdmissionError, KeyFileError, PeerError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"peer {name} admitted at {endpoint}")


@peer_app.command("remove")
def peer_remove(
    region: Annotated[str, typer.Argument(help="The peer's region id.")],
    keys: KeysOption = Path("var/keys"),
) -> None:
    """Stop admitting a peer planner and stop connecting to it."""
    from planner.peers import remove_peer

    if not remove_peer(keys, region):
        typer.echo(f"error: region {region!r} is not a peer in {keys}", err=True)
        raise typer.Exit(2)
    typer.echo(f"peer {region} removed")


@peer_app.command("serve")
def peer_serve(
    region: Annotated[str, typer.Option(help="This planner's region id.")],
    endpoint: Annotated[str, typer.Option(help="Where this planner's peer ROUTER binds, tcp://HOST:PORT.")],
    keys: KeysOption = Path("var/keys"),
    heartbeat: Annotated[float, typer.Option(min=0.05, help="Seconds between heartbeats.")] = 1.0,
    offers: Annotated[Path | None, typer.Option(help="JSON list of OFFER bodies to publish.")] = None,
    status: Annotated[
        Path | None, typer.Option(help="JSON file rewritten with the status each beat.")
    ] = None,
    capture: Annotated[Path | None, typer.Option(help="File every sent frame is appended to.")] = None,
    duration: Annotated[float | None, typer.Option(help="Seconds to run [default: until stopped].")] = None,
) -> None:
    """Serve this planner's peers: heartbeats, offers, expiry of silent peers, refused strangers."""
    from planner.peer_serve import serve

    asyncio.run(serve(region, keys, endpoint, heartbeat, offers, status, capture, duration))
