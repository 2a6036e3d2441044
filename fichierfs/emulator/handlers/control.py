"""The ``/_emulator/*`` control routes (loopback clients only): stats, reset, unlock, fault, quota, client.
See docs/emulator.md."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from ..service import EmulatorService
from ..wire import client_ip, json_response


class ControlApi:
    """Control routes; they are not API calls (not counted, never limited)."""

    def __init__(self, svc: EmulatorService) -> None:
        self.svc = svc

    async def ctl_stats(self, request: Request) -> Response:
        return json_response(self.svc.stats())

    async def ctl_reset(self, request: Request) -> Response:
        self.svc.reset_stats()
        return json_response({"status": "OK"})

    async def ctl_unlock(self, request: Request) -> Response:
        self.svc.reset_limits()
        return json_response({"status": "OK"})

    async def ctl_client(self, request: Request) -> Response:
        """``{"status":"OK","ip": the address this request came from}``: check a source-address set-up."""
        return json_response({"status": "OK", "ip": client_ip(request)})

    async def ctl_quota(self, request: Request) -> Response:
        """GET: ``{"status","quota","used"}`` (bytes); POST ``{"bytes": N}`` sets the quota first."""
        if request.method == "POST":
            try:
                b = await request.json()
                self.svc.set_quota(int(b["bytes"]))
            except (ValueError, KeyError, TypeError) as e:
                return json_response({"status": "KO", "message": str(e)}, 400)
        return json_response({"status": "OK", "quota": self.svc.quota, "used": self.svc.used_bytes()})

    async def ctl_fault(self, request: Request) -> Response:
        try:
            b = await request.json()
            self.svc.inject(b["endpoint"], b["kind"], int(b.get("nth", 1)), int(b.get("count", 1)))
        except (ValueError, KeyError, TypeError) as e:
            return json_response({"status": "KO", "message": str(e)}, 400)
        return json_response({"status": "OK"})


def loopback_only(fn: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    async def wrapped(request: Request) -> Response:
        host = request.client.host if request.client else "127.0.0.1"
        if not (host.startswith("127.") or host in ("::1", "localhost")):
            return json_response({"status": "KO", "message": "loopback only"}, 403)
        return await fn(request)

    return wrapped
