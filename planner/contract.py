"""The HTTP contract as the OpenAPI document states it: every status code an operation can answer,
with its body schema and headers, and the security each operation asks for.

Routes name their own outcomes (`errors(404, 409)`); what applies to a whole class of operations is
added here, once, when the document is built, so a new route cannot forget it:

- an operation with a request body can answer 400 (the body is not JSON), 413 (too large) and 422;
- every operation but `/health` can answer 503 with `Retry-After` when the planner is past its
  capacity (planner.overload), and `POST /orders` also 429 with `Retry-After` (too many orders);
- an operation that needs a token says so in `security` (an HTTP bearer scheme) and can answer 401;
  one where a token only adds detail lists the token as optional.

The schema of `OrderRequest.design` (and `RateRequest.design`) is narrowed to the designs this
planner knows, since the server refuses any other.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

BEARER = "bearerToken"
#: Path of the operation that is never refused for load: an operator must always see the planner.
ALWAYS_ANSWERED = "/health"


class Problem(BaseModel):
    """The body of every error but 422: what went wrong and what to do, in one sentence."""

    detail: str = Field(description="what went wrong and what to do")


class Overloaded(Problem):
    """The body of a 429 or 503 refusal for load: come back after `retry_after_s` seconds."""

    retry_after_s: int = Field(ge=1, description="the same as the Retry-After header")


DESCRIPTIONS = {
    400: "the request body could not be read (it is not JSON)",
    401: "a token is needed and none was sent, or it is unknown or revoked",
    403: "the token does not allow this (an operator token is for its own lab only)",
    404: "no such resource",
    409: "the request conflicts with the planner's state (see `detail`)",
    413: "the request body is over the planner's size limit",
    429: "too many orders a second: retry after `Retry-After` seconds",
    503: "the planner is past its capacity: retry after `Retry-After` seconds; nothing was changed",
}
RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before trying again",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each code with its description and the `Problem` body."""
    return {code: {"model": Problem, "description": DESCRIPTIONS[code]} for code in codes}


#: (method, path) -> whether a token is required ("required") or only adds detail ("optional").
Security = dict[tuple[str, str], str]


def install(
    app: FastAPI,
    security: Security,
    designs: Iterable[str],
    throttled: Iterable[tuple[str, str]] = (("post", "/orders"),),
) -> None:
    """Replace `app.openapi` with a builder that adds the codes and schemes above, and make a 405
    list in `Allow` every method of the path (Starlette lists only those of the first route)."""
    throttled = set(throttled)

    async def not_allowed(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 405:
            methods: set[str] = set()
            for route in app.router.routes:
                match, _ = route.matches({**request.scope, "method": "GET"})
                if match != Match.NONE:
                    methods |= set(getattr(route, "methods", None) or ())
            if methods:
                exc.headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(methods))}
        return await http_exception_handler(request, exc)

    app.add_exception_handler(StarletteHTTPException, not_allowed)
    design_ids = sorted(designs)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        components = schema.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        schemas["Problem"] = Problem.model_json_schema()
        schemas["Overloaded"] = Overloaded.model_json_schema()
        components.setdefault("securitySchemes", {})[BEARER] = {
            "type": "http",
            "scheme": "bearer",
            "description": "a requester or operator token (`cosmolocal planner token create`)",
        }
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                _complete(operation, method, path, security, throttled)
        for request in ("OrderRequest", "RateRequest"):
            design = schemas.get(request, {}).get("properties", {}).get("design")
            if design is not None and design_ids:
                design["enum"] = design_ids
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _problem(code: int, schema: str = "Problem") -> dict[str, Any]:
    return {
        "description": DESCRIPTIONS[code],
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _complete(
    operation: dict[str, Any], method: str, path: str, security: Security, throttled: set[tuple[str, str]]
) -> None:
    """Add to one operation the codes its class of operations can answer."""
    responses = operation.setdefault("responses", {})
    if "requestBody" in operation:
        for code in (400, 413):
            responses.setdefault(str(code), _problem(code))
    need = security.get((method, path))
    if need is not None:
        operation["security"] = [{BEARER: []}] if need == "required" else [{}, {BEARER: []}]
        if need == "required":
            responses.setdefault("401", _problem(401))
    if path != ALWAYS_ANSWERED:
        busy = _problem(503, "Overloaded") | {"headers": RETRY_AFTER}
        responses["503"] = busy
        if (method, path) in throttled:
            responses["429"] = _problem(429, "Overloaded") | {"headers": RETRY_AFTER}
    for code, answer in responses.items():  # an error answer without a body schema says nothing
        if code[0] in "45":
            answer.setdefault("content", {}).setdefault(
                "application/json", {"schema": {"$ref": "#/components/schemas/Problem"}}
            )
