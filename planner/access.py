"""Who may read and write what over HTTP: requester and operator tokens (planner.auth), checked here.

With `PlannerSettings.require_tokens` (the default of `cosmolocal planner serve`):
- a requester token (or any operator token) is needed to place orders, list them, read the plan
  and follow the whole event stream;
- an operator token for lab L is needed for L's jobs and decisions (always, open or not);
- without a token anyone may read one order by its id (the id is the capability), that order's
  explanation and event stream, the labs as facilities (no jobs), the designs, the public map
  (deliveries and flows without order ids), the network figures and /health.
Without `require_tokens` (`--open-http`, for local experiments) everything but the operator's
routes is open.
"""

from __future__ import annotations

from typing import Any

from fastapi import Header, HTTPException, Request, status

from planner.auth import Grant, TokenStore, bearer

CHALLENGE = {"WWW-Authenticate": "Bearer"}
#: The `Authorization` header of the routes that read a token; kept out of the OpenAPI parameters,
#: where the bearer security scheme states it (planner.contract).
AUTHORIZATION = Header(default=None, include_in_schema=False)


def tokens(request: Request) -> TokenStore:
    """The token store on the planner's ledger file, opened on first use."""
    store: TokenStore | None = getattr(request.app.state, "tokens", None)
    if store is None:
        store = TokenStore(request.app.state.planner.settings.db_path)
        request.app.state.tokens = store
    return store


def grant_of(request: Request, authorization: str | None, token: str | None = None) -> Grant | None:
    """The grant of the request's token (`Authorization: Bearer` or a `token` query), if valid."""
    given = bearer(authorization) or (token or None)
    return tokens(request).check(given) if given else None


def tokens_required(request: Request) -> bool:
    """True when this planner asks for tokens beyond the operator's routes."""
    return bool(request.app.state.planner.settings.require_tokens)


def need_requester(
    request: Request, authorization: str | None, what: str, token: str | None = None
) -> Grant | None:
    """Let the request through if tokens are not required or it carries a valid token; else 401.

    `what` names the action in the error ("to place an order").
    """
    if not tokens_required(request):
        return None
    given = bearer(authorization) or token
    if not given:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"a requester token is needed {what}: send it as 'Authorization: Bearer TOKEN'; the "
            "planner's administrator creates one with `cosmolocal planner token create --role requester`",
            headers=CHALLENGE,
        )
    return _known(request, given)


def _known(request: Request, token: str) -> Grant:
    """The grant of a token the planner knows; 401 for one mistyped or revoked."""
    grant = tokens(request).check(token)
    if grant is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "this token is not known to the planner (mistyped, or revoked): ask for a new one",
            headers=CHALLENGE,
        )
    return grant


def may_follow_events(
    request: Request, authorization: str | None = AUTHORIZATION, token: str | None = None
) -> Grant | None:
    """Dependency of the whole event stream: checked before the stream starts (a `token` query
    stands in for the header, since a browser's EventSource cannot send one)."""
    return need_requester(request, authorization, "to follow every event", token)


def may_order(request: Request, authorization: str | None = AUTHORIZATION) -> Grant | None:
    """Dependency of POST /orders: a stranger learns nothing, not even what a valid order looks like."""
    return need_requester(request, authorization, "to place an order")


def need_operator(request: Request, lab_id: str, authorization: str | None) -> Grant:
    """The grant of the request's bearer token, which must be an operator token for `lab_id`."""
    token = bearer(authorization)
    if token is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"lab {lab_id}'s operator token is needed: send it as 'Authorization: Bearer TOKEN' "
            "(or open /lab/LAB_ID?token=TOKEN); the planner's administrator creates one with "
            "`cosmolocal planner token create --role operator --lab LAB_ID`",
            headers=CHALLENGE,
        )
    grant = _known(request, token)
    if not grant.may_operate(lab_id):
        what = (
            f"an operator token for lab {grant.lab_id}" if grant.role == "operator" else "a requester token"
        )
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"this is {what}, not for lab {lab_id}")
    return grant


def public_lab(lab: dict[str, Any], request: Request, grant: Grant | None) -> dict[str, Any]:
    """A lab as shown to this request: without its jobs (they name orders) for an anonymous reader."""
    if tokens_required(request) and grant is None:
        return {k: v for k, v in lab.items() if k != "jobs"}
    return lab
