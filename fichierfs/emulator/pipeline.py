"""The request pipeline: what happens to every request before its handler runs.

Every named endpoint (``config.ENDPOINTS``) is an :class:`Endpoint`: it counts the call, adds ``latency`` and
applies an injected fault (``faults.py``). A ``/v1/<name>.cgi`` call then goes through :meth:`Base.v1`
(order is an [UNVERIFIED choice]; the flood lock is per IP (§4) so it is checked before anything that needs
the request to be understood):

1. the client address's locks and its 3/s sliding window (§3, §4; ``rules.Limiter.before_auth``);
2. ``Content-Type: application/json`` required, else ``{"message":"Content-Type not JSON #24"}`` (§1);
3. ``Authorization: Bearer <key>`` (§1): ``emu-*`` keys are valid (``emu-free*`` → ``Must be a customer #200``,
   §1), any other key → ``No such user #93`` (§3); a missing header → ``Not authenticated #247`` (§3
   "Not authenticated #NNN"; the code 247 is an [UNVERIFIED choice]). get_upload_server needs no account (§6);
4. the account's lock and rate over every address (#223, ``Limiter.after_auth``);
5. JSON body (empty body = ``{}``: rclone sends none to user/info, §2.1);
6. per-endpoint limits (listings §2.2/§2.3, user/info §2.1; ``Limiter.admit_endpoint``);
7. the handler (``handlers/``). ``"pretty":1`` indents the reply (§1).

:class:`Base` is what the handler classes share: the service, and lookups of folders, files and hosts.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .config import ENDPOINTS
from .service import EmulatorService
from .state import FileRec, FolderRec, file_id_from_url, paris_date
from .wire import (
    ACCOUNT,
    BAD_JSON,
    KO,
    MUST_BE_CUSTOMER,
    NO_SUCH_USER,
    NOT_AUTHENTICATED,
    NOT_JSON,
    client_ip,
    flood_response,
    html_page,
    int_param,
    json_response,
    not_found,
    send_reset,
    send_truncated,
)

__all__ = ["Base", "Endpoint", "Handler", "V1Handler"]

#: A handler of a named endpoint: ``(request, fault kind that fired or None) -> ASGI response``.
Handler = Callable[[Request, "str | None"], Awaitable[Any]]
#: A /v1 handler: ``(request, JSON body) -> reply dict or Response`` (may raise KO).
V1Handler = Callable[[Request, dict[str, Any]], Any]


class Endpoint:
    """ASGI app for one named endpoint: counts the call, adds latency, applies faults (module docstring)."""

    def __init__(self, svc: EmulatorService, name: str, handler: Handler) -> None:
        assert name in ENDPOINTS
        self.svc, self.name, self.handler = svc, name, handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        svc = self.svc
        svc.count_call(self.name, client_ip(Request(scope)))
        if svc.config.latency > 0:
            await anyio.sleep(svc.config.latency)
        fault = svc.faults.take(self.name)
        if fault == "reset":
            await send_reset(scope, send)
            return
        if fault == "5xx":
            response: Any = html_page("<h1>503 Service Temporarily Unavailable</h1>", 503)
        elif fault == "html":
            response = html_page("Veuillez patienter / Please wait")
        elif fault == "flood":
            response = flood_response(svc.limiter.flood(client_ip(Request(scope))))
        else:
            response = await self.handler(Request(scope, receive), fault)
        if fault == "truncate":
            await send_truncated(response, scope, receive, send)
        else:
            await response(scope, receive, send)


class Base:
    """Shared by the handler classes: the service, its account and config, the /v1 pipeline, lookups."""

    def __init__(self, svc: EmulatorService) -> None:
        self.svc = svc
        self.acct = svc.account
        self.cfg = svc.config

    # ---- the /v1 pipeline (module docstring) --------------------------------------------------------
    def v1(self, name: str, fn: V1Handler) -> Handler:
        async def handler(request: Request, fault: str | None) -> Response:
            lim = self.svc.limiter
            # Read the (small) JSON body before any early answer: answering an HTTP/2 request
            # whose body is still arriving crashes hypercorn 0.18 (KeyError on the closed stream,
            # hypercorn #329), which the rclone fidelity run hit during flood locks.
            raw = await request.body()
            ip = client_ip(request)
            refusal = lim.before_auth(ip, name)  # §3, §4: the address's locks and 3/s window
            if refusal is not None:
                return flood_response(refusal)
            ctype = request.headers.get("content-type", "")
            if ctype.split(";")[0].strip().lower() != "application/json":  # §1
                return json_response({"message": NOT_JSON}, 403)  # [UNVERIFIED choice] HTTP 403
            if name != "upload/get_upload_server":  # §6 "The call needs no account"
                err = self._auth_error(request)
                if err is not None:
                    return json_response({"status": "KO", "message": err}, 403)
            user = ACCOUNT if self._authenticated(request) else None
            if user is not None:
                refusal = lim.after_auth(user, name)  # §3 #223: the account's lock and rate
                if refusal is not None:
                    return flood_response(refusal)
            try:
                body = json.loads(raw) if raw.strip() else {}
            except (ValueError, UnicodeDecodeError):
                return json_response({"status": "KO", "message": BAD_JSON}, 403)
            if not isinstance(body, dict):
                return json_response({"status": "KO", "message": BAD_JSON}, 403)
            pretty = bool(body.get("pretty"))
            try:
                folder_id = int_param(body, "folder_id", 0) if name in ("folder/ls", "file/ls") else None
                refusal = lim.admit_endpoint(ip, user, name, folder_id)  # §2.1, §2.2, §2.3, §4
                if refusal is not None:
                    return flood_response(refusal)
                result = fn(request, body)
                if isinstance(result, Response):
                    return result
                return json_response(result, pretty=pretty)
            except KO as e:
                return json_response({"status": "KO", "message": e.message}, e.status, pretty=pretty)

        return handler

    @staticmethod
    def _bearer(request: Request) -> str | None:
        auth = request.headers.get("authorization")
        if not auth:
            return None
        scheme, _, key = auth.strip().partition(" ")
        return key.strip() if scheme.lower() == "bearer" and key.strip() else None

    def _auth_error(self, request: Request) -> str | None:
        """§1 / §3: Bearer key; ``emu-*`` valid; ``emu-free*`` is a free account (#200)."""
        auth = request.headers.get("authorization")
        if not auth:
            return NOT_AUTHENTICATED
        key = self._bearer(request)
        if key is None:
            return NOT_AUTHENTICATED
        if not key.startswith("emu-"):
            return NO_SUCH_USER
        if key.startswith("emu-free"):
            return MUST_BE_CUSTOMER
        return None

    def _authenticated(self, request: Request) -> bool:
        return self._auth_error(request) is None

    # ---- helpers ------------------------------------------------------------------------------------
    def _folder(self, folder_id: int) -> FolderRec:
        f = self.acct.folder(folder_id) if folder_id >= 0 else None
        if f is None:
            raise not_found()  # [UNVERIFIED choice] unknown folder → 404 #469
        return f

    def _file(self, url: Any) -> FileRec:
        """Account file by URL; unknown → 404 ``Resource not found #469`` (§2.4, §3)."""
        fid = file_id_from_url(url)
        rec = self.acct.file(fid) if fid else None
        if rec is None or rec.folder_id is None:
            raise not_found()
        return rec

    def _visible(self, rec: FileRec) -> bool:
        return self.svc.visible(rec)

    def _listed_files(self, folder_id: int) -> list[FileRec]:
        """Files a listing shows: visible ones (§6 "Visibility"), at most ``max_listing`` (§2.2)."""
        return [r for r in self.acct.files_in(folder_id) if self._visible(r)]

    @staticmethod
    def list_item(r: FileRec) -> dict[str, Any]:
        """FileListItem (§2.3): ints for size/pass/acl/cdn, hyphenated ``content-type``."""
        return {
            "url": r.url,
            "filename": r.filename,
            "size": r.size,
            "date": paris_date(r.upload_time),
            "checksum": r.whirlpool,
            "content-type": r.content_type,
            "pass": int(bool(r.password)),
            "acl": r.acl_flag(),
            "cdn": r.cdn,
        }

    def _node_host(self, request: Request) -> str:
        """A node host name (§6 step 1): ``up2.1fichier.com`` on the real domain, else our own host:port."""
        host = request.headers.get("host", "")
        if host.split(":")[0].endswith("1fichier.com"):
            return "up2.1fichier.com"
        return host or f"{request.url.hostname}:{request.url.port}"

    def _base(self, request: Request, real: str) -> str:
        host = request.headers.get("host", "")
        if host.split(":")[0].endswith("1fichier.com"):
            return real
        return f"{request.url.scheme}://{host}"

