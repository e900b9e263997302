"""The federation's HTTP routes: what this planner trades with its peers, and a session on request.

`GET /federation` is public: peers, trades (designs, units, day windows, coarse cells, regions: what
the peers see anyway), flows between regions, rounds and counters; never an order or a lab.
`POST /federation/negotiate` opens a session of rounds now; only the coordinator may (409 names it),
and it needs a requester token when the planner asks for tokens.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request

from planner import contract
from planner.access import may_order
from planner.auth import Grant

router = APIRouter(tags=["federation"])


def _federation(request: Request) -> Any:
    federation = request.app.state.planner.federation
    if federation is None:
        raise HTTPException(404, "this planner has no peers (start it with --peer-region)")
    return federation


@router.get("/federation", responses=contract.errors(404))
async def get_federation(request: Request) -> dict[str, Any]:
    """This planner's region, its peers (live, lost), the coordinator, trades, flows and rounds."""
    return _federation(request).status()


@router.post("/federation/negotiate", responses=contract.errors(404, 409))
async def negotiate(request: Request, _grant: Grant | None = Depends(may_order)) -> dict[str, Any]:
    """Open a session of rounds with the live peers now and answer with its rounds, once it ends."""
    federation = _federation(request)
    if federation.coordinator != federation.region:
        raise HTTPException(409, f"region {federation.coordinator!r} coordinates the rounds, not this one")
    return await federation.negotiate()
