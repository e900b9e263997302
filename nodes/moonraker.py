"""Moonraker's HTTP API (Klipper printers), as the printer executor uses it (`nodes.printers`).

The calls: `GET /printer/objects/query?print_stats&virtual_sdcard&webhooks` (Klippy's state, the
print's state, file, progress and duration), `POST /server/files/upload` (multipart), `POST
/printer/print/start?filename=...`, `POST /printer/print/cancel`, and `GET /server/history/list`,
Moonraker's own record of how each print ended (`completed`, `cancelled`, `error`, ...). A key, when
the lab file names one, goes in the `X-Api-Key` header; Moonraker answers 401 to a wrong one.

Klipper gives no time left of its own: the estimate is Moonraker's print duration so far scaled by
the part of the file still to print (`print_duration × (1 − progress) / progress`).
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
    PrinterStatus,
    PrinterUnreachable,
)

#: History statuses of a print that did not end in success.
_FAILED = {"cancelled", "error", "klippy_shutdown", "klippy_disconnect", "server_exit", "interrupted"}


class MoonrakerServer(PrinterServer):
    """One Moonraker instance (and the Klippy behind it) at `link.url`."""

    kind = "Moonraker"

    def __init__(self, link: PrinterLink, timeout_s: float = 5.0) -> None:
        self.link = link
        key = link.api_key()
        headers = {"X-Api-Key": key} if key else {}
        self._client = httpx.AsyncClient(base_url=link.url.rstrip("/"), headers=headers, timeout=timeout_s)

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        mid = self.link.machine_id
        try:
            response = await self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise PrinterUnreachable(
                f"machine {mid}: Moonraker at {self.link.url} does not answer ({type(exc).__name__}); "
                "check that it runs and that the url in the lab file is right"
            ) from None
        if response.status_code in (401, 403):
            raise PrinterKeyRefused(
                f"machine {mid}: Moonraker at {self.link.url} refused "
                + (
                    f"the API key in {self.link.api_key_file}"
                    if self.link.api_key_file
                    else "this lab (no API key)"
                )
                + f" ({response.status_code}); put Moonraker's API key in the file named by api_key_file "
                "(Moonraker: GET /access/api_key), or add this host to its trusted_clients"
            )
        return response

    async def status(self) -> PrinterStatus:
        response = await self._call("GET", "/printer/objects/query?print_stats&virtual_sdcard&webhooks")
        if response.status_code != 200:
            # Moonraker answers 503 while Klippy is not connected or not ready.
            return PrinterStatus(state="offline", message=_message(response))
        objects = response.json()["result"]["status"]
        hooks = objects.get("webhooks") or {}
        if hooks.get("state") not in (None, "ready"):
            return PrinterStatus(state="error", message=str(hooks.get("state_message") or hooks.get("state")))
        stats = objects.get("print_stats") or {}
        sdcard = objects.get("virtual_sdcard") or {}
        state = str(stats.get("state", "standby"))
        progress = sdcard.get("progress")
        left = None
        duration = stats.get("print_duration")
        if progress and duration is not None and progress > 0:
            left = float(duration) * (1.0 - float(progress)) / float(progress)
        mapped = {"printing": "printing", "paused": "paused"}.get(state, "ready")
        return PrinterStatus(
            state=mapped,  # type: ignore[arg-type]
            file=stats.get("filename") or None,
            progress=None if progress is None else float(progress),
            time_left_s=left,
            message=str(stats.get("message") or state),
        )

    async def upload(self, name: str, data: bytes) -> None:
        response = await self._call("POST", "/server/files/upload", files={"file": (name, data)})
        if response.status_code not in (200, 201):
            raise PrinterError(
                f"machine {self.link.machine_id}: Moonraker refused the upload of {name} "
                f"({_message(response)})"
            )

    async def start(self, name: str) -> None:
        # Klipper starts a new file even over a paused print (and the paused one is then recorded as
        # completed): refuse here, as OctoPrint does, whenever the printer is not ready.
        status = await self.status()
        if status.state != "ready":
            raise PrinterBusy(
                f"machine {self.link.machine_id}: Moonraker cannot start {name} now (printer {status.state})"
            )
        response = await self._call("POST", "/printer/print/start", params={"filename": name})
        if response.status_code != 200:
            raise PrinterBusy(
                f"machine {self.link.machine_id}: Moonraker cannot start {name} now ({_message(response)})"
            )

    async def cancel(self) -> None:
        await self._call("POST", "/printer/print/cancel")

    async def outcome(self, name: str) -> tuple[str, str] | None:
        # Klipper's own word on its current job first: a print shorter than Moonraker's sampling may
        # never reach the history (it saw no `printing` state), but print_stats keeps how it ended.
        current = await self._call("GET", "/printer/objects/query?print_stats")
        if current.status_code == 200:
            stats = current.json()["result"]["status"].get("print_stats") or {}
            if stats.get("filename") == name and stats.get("state") == "complete":
                return ("success", "")
            if stats.get("filename") == name and stats.get("state") in ("cancelled", "error"):
                why = stats.get("message") or stats.get("state")
                return ("failed", f"Klipper reports the print {stats.get('state')}: {why}")
        response = await self._call("GET", "/server/history/list", params={"limit": 100, "order": "desc"})
        if response.status_code != 200:
            return None
        for job in response.json()["result"].get("jobs", []):
            if job.get("filename") != name:
                continue
            status = str(job.get("status"))
            if status == "completed":
                return ("success", "")
            if status in _FAILED:
                return ("failed", f"Moonraker's history records the print as {status}")
            return None
        return None

    async def close(self) -> None:
        await self._client.aclose()


def _message(response: httpx.Response) -> str:
    try:
        return f"{response.status_code}: {response.json()['error']['message']}"
    except (ValueError, KeyError, TypeError):
        return f"{response.status_code}: {response.text[:200]}"
