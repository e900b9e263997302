"""OctoPrint's REST API, as the printer executor uses it (`nodes.printers.PrinterServer`).

The calls: `GET /api/job` (state, current file, `progress.completion`, `printTimeLeft`),
`POST /api/files/local` (multipart upload), `POST /api/files/local/{name}` `{"command": "select",
"print": true}` (409 while printing or disconnected), `POST /api/job {"command": "cancel"}`, and
`GET /api/files/local/{name}`, whose `prints.success` / `prints.failure` are OctoPrint's own record of
how the file's prints ended. The key goes in the `X-Api-Key` header; a wrong key gives 403.
"""

from __future__ import annotations

from typing import Any

import httpx

from nodes.printers import (
    PrinterBusy,
    PrinterError,
    PrinterKeyRefused,
    PrinterLink,
    PrinterServer,
    PrinterState,
    PrinterStatus,
    PrinterUnreachable,
)


def octoprint_state(text: str) -> PrinterState:
    """OctoPrint's state text ("Operational", "Printing from SD", "Offline after error"...) as ours."""
    lowered = text.lower()
    if "error" in lowered:
        return "error"
    if lowered.startswith(("printing", "starting", "cancelling", "finishing")):
        return "printing"
    if lowered.startswith(("paused", "pausing", "resuming")):
        return "paused"
    if lowered.startswith("operational"):
        return "ready"
    return "offline"  # Offline, Closed, Connecting, Opening serial connection, Detecting...


class OctoPrintServer(PrinterServer):
    """One OctoPrint instance, reached at `link.url` with the application key in `link.api_key_file`."""

    kind = "OctoPrint"

    def __init__(self, link: PrinterLink, timeout_s: float = 5.0) -> None:
        self.link = link
        key = link.api_key()
        if key is None:
            raise PrinterError(
                f"machine {link.machine_id}: OctoPrint needs an API key: set api_key_file in the lab file "
                "to a file holding an application key (OctoPrint: Settings > Application Keys)"
            )
        self._client = httpx.AsyncClient(
            base_url=link.url.rstrip("/"), headers={"X-Api-Key": key}, timeout=timeout_s
        )

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        mid = self.link.machine_id
        try:
            response = await self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise PrinterUnreachable(
                f"machine {mid}: OctoPrint at {self.link.url} does not answer ({type(exc).__name__}); "
                "check that it runs and that the url in the lab file is right"
            ) from None
        if response.status_code in (401, 403):
            raise PrinterKeyRefused(
                f"machine {mid}: OctoPrint at {self.link.url} refused the API key in "
                f"{self.link.api_key_file} ({response.status_code}); put a valid application key in that "
                "file (OctoPrint: Settings > Application Keys)"
            )
        return response

    async def status(self) -> PrinterStatus:
        response = await self._call("GET", "/api/job")
        if response.status_code != 200:
            raise PrinterError(
                f"machine {self.link.machine_id}: OctoPrint /api/job answered {response.status_code}"
            )
        body = response.json()
        text = str(body.get("state", ""))
        job = body.get("job") or {}
        progress = body.get("progress") or {}
        completion = progress.get("completion")
        return PrinterStatus(
            state=octoprint_state(text),
            file=(job.get("file") or {}).get("path"),
            progress=None if completion is None else float(completion) / 100.0,
            time_left_s=None if progress.get("printTimeLeft") is None else float(progress["printTimeLeft"]),
            message=str(body.get("error") or text),
        )

    async def upload(self, name: str, data: bytes) -> None:
        response = await self._call("POST", "/api/files/local", files={"file": (name, data)})
        if response.status_code not in (200, 201):
            raise PrinterError(
                f"machine {self.link.machine_id}: OctoPrint refused the upload of {name} "
                f"({response.status_code}: {response.text[:200]})"
            )

    async def start(self, name: str) -> None:
        response = await self._call(
            "POST", f"/api/files/local/{name}", json={"command": "select", "print": True}
        )
        if response.status_code == 409:
            raise PrinterBusy(f"machine {self.link.machine_id}: OctoPrint cannot start {name} now (409)")
        if response.status_code not in (200, 204):
            raise PrinterError(
                f"machine {self.link.machine_id}: OctoPrint would not start {name} "
                f"({response.status_code}: {response.text[:200]})"
            )

    async def cancel(self) -> None:
        response = await self._call("POST", "/api/job", json={"command": "cancel"})
        if response.status_code not in (204, 409):
            raise PrinterError(
                f"machine {self.link.machine_id}: OctoPrint cancel answered {response.status_code}"
            )

    async def outcome(self, name: str) -> tuple[str, str] | None:
        response = await self._call("GET", f"/api/files/local/{name}")
        if response.status_code == 404:
            return None
        prints = response.json().get("prints") or {}
        if prints.get("success"):
            return ("success", "")
        if prints.get("failure"):
            return ("failed", "OctoPrint records the print as failed (cancelled or stopped by an error)")
        return None

    async def close(self) -> None:
        await self._client.aclose()
