"""Refuse request bodies over a size with a readable 413, before they are read; counted.

A pure ASGI middleware: it looks at the declared `content-length` and passes everything else
through untouched. Starlette's `@app.middleware("http")` (BaseHTTPMiddleware) would do the same
check but run every request in a task group of its own and copy every chunk of every response
through a memory stream: under load, with 200 event streams open, that copying was a large share
of the planner's event loop (py-spy, `cosmolocal bench load --labs 200`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class SizeLimitMiddleware:
    """413 for a request whose declared body is over `max_bytes`; `refused` is called for each."""

    def __init__(self, app: ASGIApp, max_bytes: int, refused: Callable[[Scope], None]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.refused = refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            declared = _content_length(scope)
            if declared is not None and declared > self.max_bytes:
                self.refused(scope)
                detail = f"request body of {declared} bytes exceeds the limit of {self.max_bytes} bytes"
                body = json.dumps({"detail": detail}).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 413,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1")
            return int(text) if text.isdigit() else None
    return None
