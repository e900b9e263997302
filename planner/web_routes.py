"""The planner's web pages and the operator's job-decision API (an APIRouter mounted by `planner.app`).

Pages (HTML, server-rendered; their scripts read the JSON API and follow `/events` live):

- `/` the map of the mesh; `/order` the order form; `/order/{id}` an order's status (its address is
  the capability: no login); `/lab/{id}?token=...` a lab's operator page; `/network` plan figures.

API added here: `GET /labs/{id}/jobs` (the lab's jobs and the planner's view of its schedule),
`POST /labs/{id}/jobs/{assignment_id}/decision` and `POST /labs/{id}/jobs/{assignment_id}/report`
(work done by hand), all for the lab's operator token only
(`Authorization: Bearer ...`), and the public `GET /network/stats`. Static files come from
`planner/web/static/`, plotly.js from the installed `plotly` package: nothing from a CDN.
"""

from __future__ import annotations

import html
import logging
from functools import cache
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, status
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from planner import contract
from planner.access import AUTHORIZATION, need_operator
from planner.auth import Grant
from planner.store import AssignmentRow
from planner.web import views
from planner.web.pages import STATIC, design_options, render
from protocol.model import ID_PATTERN

log = logging.getLogger(__name__)
router = APIRouter()

#: Static files the pages may load, with their media types (nothing else under static/ is served).
STATIC_TYPES = {
    "app.css": "text/css; charset=utf-8",
    "common.js": "text/javascript; charset=utf-8",
    "map.js": "text/javascript; charset=utf-8",
    "order-form.js": "text/javascript; charset=utf-8",
    "order-status.js": "text/javascript; charset=utf-8",
    "rate-status.js": "text/javascript; charset=utf-8",
    "lab.js": "text/javascript; charset=utf-8",
    "network.js": "text/javascript; charset=utf-8",
    "world_110m.json": "application/json",
}
PLOTLY = "plotly.min.js"
LabId = Annotated[str, Path(pattern=ID_PATTERN, description="the lab's id")]
#: Assignment ids are the order's id, "-a" and a number (planner.core).
AssignmentId = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}-a[0-9]{1,9}$")]


class Decision(BaseModel):
    """A lab operator's answer to a job offered to the lab."""

    accept: bool
    reason: str = Field(default="", max_length=500, description="why the lab refuses (required to refuse)")


class HandReport(BaseModel):
    """A lab operator's report of work done by hand on a job under way (`node join --by-hand`)."""

    made: int = Field(default=0, ge=0, le=1_000_000, description="units made since the last report")
    failed: int = Field(default=0, ge=0, le=1_000_000, description="units failed: ends the job as FAILED")
    reason: str = Field(default="", max_length=400, description="why units failed (required with failed)")


def _planner(request: Request) -> Any:
    return request.app.state.planner


def _operator(request: Request, lab_id: str, authorization: str | None) -> Grant:
    """The grant of an operator token for `lab_id` (401/403 otherwise); 404 for an unknown lab."""
    grant = need_operator(request, lab_id, authorization)
    if lab_id not in _planner(request).core.labs:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no lab {lab_id!r} has joined this planner")
    return grant


# --- API ------------------------------------------------------------------------------------


@router.get("/labs/{lab_id}/jobs", tags=["labs"], responses=contract.errors(401, 403, 404))
async def get_lab_jobs(
    lab_id: LabId, request: Request, authorization: str | None = AUTHORIZATION
) -> dict[str, Any]:
    """The lab's jobs for its operator (newest first; `awaiting_decision` marks jobs to answer) and
    the planner's view of the lab's machine schedule. Needs the lab's operator token."""
    _operator(request, lab_id, authorization)
    core = _planner(request).core
    return {"lab_id": lab_id, "jobs": views.lab_jobs(core, lab_id), "schedule": views.schedule(core, lab_id)}


def _lab_job(
    request: Request, lab_id: str, assignment_id: str, authorization: str | None
) -> tuple[Any, AssignmentRow]:
    """The planner and one of the lab's jobs, for the lab's operator; 404 when the lab has no such job."""
    _operator(request, lab_id, authorization)
    planner = _planner(request)
    job = planner.core.assignments.get(assignment_id)
    if job is None or job.lab_id != lab_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"lab {lab_id} has no job {assignment_id!r}")
    return planner, job


def _require_connected(planner: Any, lab_id: str, verb: str) -> None:
    """409 when the lab is not connected: what the operator says could not reach it."""
    if not planner.core.labs[lab_id].live:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"lab {lab_id} is not connected: start its node, then {verb} again"
        )


def _unreachable(lab_id: str) -> HTTPException:
    """503: the lab is connected but the message could not be queued for it."""
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE, f"lab {lab_id} cannot be reached right now: try again"
    )


@router.post(
    "/labs/{lab_id}/jobs/{assignment_id}/decision",
    tags=["labs"],
    status_code=status.HTTP_202_ACCEPTED,
    responses=contract.errors(401, 403, 404, 409),
)
async def post_job_decision(
    lab_id: LabId,
    assignment_id: AssignmentId,
    decision: Decision,
    request: Request,
    authorization: str | None = AUTHORIZATION,
) -> dict[str, Any]:
    """Accept or refuse a job offered to the lab (a lab running `node join --manual` waits for this).

    The planner forwards the decision to the lab as DECIDE; the lab's answer (ACCEPT or REFUSE) then
    arrives over the mesh and shows on `/events`. A refused job's units go back to demand and are
    planned again. 409 when the job is no longer awaiting an answer or the lab is not connected.
    """
    planner, job = _lab_job(request, lab_id, assignment_id, authorization)
    if job.state != "assigned":
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"job {assignment_id} is already {job.state}: only a job awaiting the lab's answer can be "
            "accepted or refused",
        )
    reason = decision.reason.strip()
    if not decision.accept and not reason:
        raise HTTPException(
            422,
            [
                {
                    "loc": ["body", "reason"],
                    "msg": "say why the lab refuses: the planner and the requester read it",
                    "type": "value_error",
                }
            ],
        )
    _require_connected(planner, lab_id, "decide")
    if not planner.mesh.send_decision(lab_id, assignment_id, decision.accept, reason):
        raise _unreachable(lab_id)
    log.info(
        "operator of %s %s %s%s",
        lab_id,
        "accepted" if decision.accept else "refused",
        assignment_id,
        f": {reason}" if reason else "",
    )
    return {"assignment_id": assignment_id, "accept": decision.accept, "reason": reason, "sent": True}


@router.post(
    "/labs/{lab_id}/jobs/{assignment_id}/report",
    tags=["labs"],
    status_code=status.HTTP_202_ACCEPTED,
    responses=contract.errors(401, 403, 404, 409),
)
async def post_work_report(
    lab_id: LabId,
    assignment_id: AssignmentId,
    report: HandReport,
    request: Request,
    authorization: str | None = AUTHORIZATION,
) -> dict[str, Any]:
    """Report units made or failed by hand on a job under way (the lab runs `node join --by-hand`).

    The planner forwards the report to the lab as REPORT; the lab counts it through its journal and
    answers PROGRESS, DONE or FAILED over the mesh. 409 when the job is not under way or the lab is
    not connected; 422 for an empty report, or failed units without a reason.
    """
    planner, job = _lab_job(request, lab_id, assignment_id, authorization)
    if job.state not in ("accepted", "running"):
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"job {assignment_id} is {job.state}: only a job under way takes reports",
        )
    reason = report.reason.strip()
    problem = None
    if not report.made and not report.failed:
        problem = ("made", "report at least one unit made or failed")
    elif report.failed and not reason:
        problem = ("reason", "say why the units failed: the planner and the requester read it")
    if problem is not None:
        raise HTTPException(422, [{"loc": ["body", problem[0]], "msg": problem[1], "type": "value_error"}])
    _require_connected(planner, lab_id, "report")
    if not planner.mesh.send_report(lab_id, assignment_id, report.made, report.failed, reason):
        raise _unreachable(lab_id)
    log.info(
        "operator of %s reports %s: %d made, %d failed", lab_id, assignment_id, report.made, report.failed
    )
    return {"assignment_id": assignment_id, "made": report.made, "failed": report.failed, "sent": True}


@router.get("/network/stats", tags=["plan"])
async def get_network_stats(request: Request) -> dict[str, Any]:
    """Plan figures (version, objective, bound, gap), transport km and CO2e with the factor's
    source, and the fill rate over time."""
    return views.network(_planner(request).core)


@router.get("/network/map", tags=["plan"])
async def get_network_map(request: Request) -> dict[str, Any]:
    """The public map's data: delivery places (units wanted and made) and the plan's flows from
    labs to places, without order ids (an order is followed by its id)."""
    return views.public_map(_planner(request).core)


# --- static files ---------------------------------------------------------------------------


@cache
def _plotly_js() -> bytes:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode("utf-8")


@router.get("/static/{name}", include_in_schema=False)
async def static_file(name: str) -> Response:
    """One of the pages' static files, or plotly.js from the installed plotly package."""
    headers = {"Cache-Control": "public, max-age=3600"}
    if name == PLOTLY:
        return Response(_plotly_js(), media_type="text/javascript; charset=utf-8", headers=headers)
    media_type = STATIC_TYPES.get(name)
    if media_type is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no static file {name!r}")
    return Response((STATIC / name).read_bytes(), media_type=media_type, headers=headers)


# --- pages ----------------------------------------------------------------------------------


def _page(text: str, code: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=code, headers={"Cache-Control": "no-store"})


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def map_page() -> HTMLResponse:
    """The map of the mesh: labs, delivery points, the current plan's flows."""
    return _page(render("map", "Map", "/", (PLOTLY, "map.js")))


@router.get("/order", response_class=HTMLResponse, include_in_schema=False)
async def order_form_page(request: Request) -> HTMLResponse:
    """The order form: design picker (licence, needs), quantity, due date, place, priority."""
    options, details = design_options(_planner(request).core.designs)
    return _page(
        render(
            "order_form",
            "Order",
            "/order",
            ("order-form.js",),
            design_options=options,
            design_details=details,
        )
    )


def _status_page(kind: str, key: str, known: bool, template: str, script: str) -> HTMLResponse:
    """A live status page for an order or a rate, or a clear 404 when `key` names none here."""
    escaped = html.escape(key)
    if not known:
        message = f"There is no {kind.lower()} {escaped} here. Check the address you were given."
        return _page(render("not_found", "Not found", "", message=message), 404)
    ids = {f"{kind.lower()}_id": escaped, f"{kind.lower()}_id_attr": escaped}
    return _page(render(template, f"{kind} {key}", "", (script,), **ids))


@router.get("/order/{order_id}", response_class=HTMLResponse, include_in_schema=False)
async def order_status_page(order_id: str, request: Request) -> HTMLResponse:
    """An order's live status; its address is the capability to follow it."""
    known = order_id in _planner(request).core.orders
    return _status_page("Order", order_id, known, "order_status", "order-status.js")


@router.get("/rate/{rate_id}", response_class=HTMLResponse, include_in_schema=False)
async def rate_status_page(rate_id: str, request: Request) -> HTMLResponse:
    """A rate's live status: days until its need is met, its releases; the address is the key."""
    known = rate_id in _planner(request).core.rates
    return _status_page("Rate", rate_id, known, "rate_status", "rate-status.js")


@router.get("/lab/{lab_id}", response_class=HTMLResponse, include_in_schema=False)
async def lab_page(lab_id: str, request: Request) -> HTMLResponse:
    """A lab's operator page (its script sends the `?token=` as a bearer header to the API)."""
    view = _planner(request).core.labs.get(lab_id)
    if view is None:
        message = f"No lab {html.escape(lab_id)} has joined this planner yet. Start its node, then reload."
        return _page(render("not_found", "Not found", "", message=message), 404)
    escaped = html.escape(lab_id)
    return _page(
        render(
            "lab",
            f"Lab {view.lab.name}",
            "",
            (PLOTLY, "lab.js"),
            lab_id=escaped,
            lab_id_attr=escaped,
            lab_name=html.escape(view.lab.name),
        )
    )


@router.get("/network", response_class=HTMLResponse, include_in_schema=False)
async def network_page() -> HTMLResponse:
    """Plan version, objective, bound and gap; transport and CO2e; fill rate over time."""
    return _page(render("network", "Network", "/network", (PLOTLY, "network.js")))
