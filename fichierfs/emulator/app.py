"""The Starlette ASGI app: one handler per 1fichier endpoint (§2, §5, §6, §8 checklist).

Every host routes to the same app (api.1fichier.com, up2.1fichier.com, a-1.1fichier.com, 127.0.0.1:PORT):
the paths do not overlap.

Pipeline of a ``/v1/<name>.cgi`` call (order is an [UNVERIFIED choice]; the flood lock is per IP (§4) so it is
checked before anything that needs the request to be understood):

1. count the call (``stats()["calls"][name]``), add ``latency``;
2. injected fault, if one fires (``faults.py``);
3. flood lock (§3, §4) and the 3/s sliding window (§4) — every /v1 request counts;
4. ``Content-Type: application/json`` required, else ``{"message":"Content-Type not JSON #24"}`` (§1);
5. ``Authorization: Bearer <key>`` (§1): ``emu-*`` keys are valid (``emu-free*`` → ``Must be a customer #200``,
   §1), any other key → ``No such user #93`` (§3); a missing header → ``Not authenticated #247`` (§3
   "Not authenticated #NNN"; the code 247 is an [UNVERIFIED choice]). get_upload_server needs no account (§6).
6. JSON body (empty body = ``{}``: rclone sends none to user/info, §2.1);
7. per-endpoint limits (listings §2.2/§2.3, user/info §2.1);
8. the handler. Errors are HTTP 403 + ``{"status":"KO","message":"… #NNN"}``, except ``Resource not found
   #469`` which is HTTP 404 (§3). ``"pretty":1`` indents the reply (§1).
"""

from __future__ import annotations

import email.utils
import json
import mimetypes
import re
import secrets
import string
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import anyio
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from .config import API_ENDPOINTS, ENDPOINTS
from .rules import ONE_LOCATION, name_error
from .state import FileRec, paris_date, store_stream

if TYPE_CHECKING:
    from .core import Emulator

__all__ = ["build_app", "INPROCESS_KEY", "FAULT_HEADER"]

#: Scope key set by ``Emulator.transport()`` so that faults are signalled to the in-process transport.
INPROCESS_KEY = "fichierfs.emulator.inprocess"
#: Response header telling the in-process transport to turn the reply into a transport error.
FAULT_HEADER = "x-emulator-fault"

_ALNUM = string.ascii_letters + string.digits

# -- messages (§3 table; codes not in the doc are [UNVERIFIED choice]s) ------------------------------------
NOT_JSON = "Content-Type not JSON #24"  # §1, §3
NO_SUCH_USER = "No such user #93"  # §3
NOT_AUTHENTICATED = "Not authenticated #247"  # §3 "#NNN": code is an [UNVERIFIED choice]
MUST_BE_CUSTOMER = "Must be a customer (Premium, Access) #200"  # §1
NOT_FOUND = "Resource not found #469"  # §2.4, §3 (HTTP 404)
NOT_RENAMED = "No file has been renamed #312"  # §2.7, §3
BAD_JSON = "Invalid JSON #26"  # [UNVERIFIED choice]
BAD_PARAM = "Invalid parameter {} #27"  # [UNVERIFIED choice]
BAD_NAME = "Invalid name #367"  # [UNVERIFIED choice] §7 forbidden characters / >250 chars
FOLDER_EXISTS = "Folder already exists #365"  # [UNVERIFIED choice] §2.11 duplicate folder names
FOLDER_NOT_EMPTY = "Folder not empty #366"  # [UNVERIFIED choice] §2.12
ROOT_FORBIDDEN = "Root folder cannot be modified #369"  # [UNVERIFIED choice]
BAD_DESTINATION = "Invalid destination folder #368"  # [UNVERIFIED choice] move a folder into itself
SAME_NAME_MOVE = "Move to the same name is not allowed #313"  # §2.6 gotcha; text/code [UNVERIFIED choice]
RENAME_ONE_URL = "Rename requires exactly one url #314"  # §2.6/§2.8/§2.9; text/code [UNVERIFIED choice]
PASS_TOO_SHORT = "Password must be at least 6 characters #370"  # §2.9/§2.14 "at least 6 chars"
TOO_BIG_FOR_SCAN = "File too big for scan #371"  # §2.10 "Files under 5 GB only"
OVER_QUOTA = "Not enough space #372"  # [UNVERIFIED choice]


class KO(Exception):
    """A ``{"status":"KO","message":…}`` reply (§3). HTTP 403 unless told otherwise."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _not_found() -> KO:
    return KO(NOT_FOUND, 404)


def json_response(obj: Any, status: int = 200, pretty: bool = False) -> Response:
    """JSON with ``Content-Type: application/json; charset=utf-8`` (§1 HTTP version row).

    [UNVERIFIED choice] non-ASCII is sent as UTF-8 and ``/`` unescaped (PHP's json_encode would escape both;
    any JSON decoder accepts either)."""
    text = json.dumps(obj, ensure_ascii=False, indent=4 if pretty else None)
    return Response(text.encode(), status_code=status, media_type="application/json; charset=utf-8")


def html_page(message: str, status: int = 200) -> Response:
    """An HTML page (the real service answers HTML for node errors and dead tokens, §5, §6)."""
    body = (
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>1fichier.com: Cloud Storage</title></head>"
        f"<body><div class=\"bloc\">{message}</div></body></html>"
    )
    return Response(body.encode(), status_code=status, media_type="text/html; charset=utf-8")


def _flood_response(message: str) -> Response:
    """§3: flood errors are HTTP 403 + KO (#412, #223, #38)."""
    return json_response({"status": "KO", "message": message}, 403)


def client_ip(scope_or_request: Request) -> str:
    """The client address the per-IP rules key on (§3, §4): the TCP peer (in-process: the transport's
    ``client_ip``)."""
    c = scope_or_request.client
    return c.host if c is not None and c.host else "127.0.0.1"


#: The one account every ``emu-*`` key opens (per-user limits, §3 #223).
ACCOUNT = "emulator@fichierfs.invalid"


# -- request body helpers ---------------------------------------------------------------------------------
def _int(body: dict[str, Any], key: str, default: int | None = None, *, required: bool = False) -> int:
    """An integer parameter. [UNVERIFIED choice] digit strings are accepted too (lenient, like PHP)."""
    if key not in body or body[key] is None:
        if required or default is None:
            raise KO(BAD_PARAM.format(key))
        return default
    v = body[key]
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, str) and re.fullmatch(r"-?\d+", v.strip()):
        return int(v)
    raise KO(BAD_PARAM.format(key))


def _str(body: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    v = body.get(key)
    if v is None:
        if required:
            raise KO(BAD_PARAM.format(key))
        return None
    if not isinstance(v, str):
        raise KO(BAD_PARAM.format(key))
    return v


_DATE_RE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def _date(body: dict[str, Any], key: str) -> str | None:
    """A ``YYYY-MM-DD HH:MM:SS`` parameter (§2.3), or None when absent/empty; anything else is refused."""
    v = body.get(key)
    if v is None or v == "":
        return None
    if not isinstance(v, str) or not _DATE_RE.fullmatch(v.strip()):
        raise KO(BAD_PARAM.format(key))
    return v.strip()


def _check_name(name: Any, emu: Emulator) -> str:
    if name_error(name, emu.config.max_name) is not None:
        raise KO(BAD_NAME)
    return name


def file_id_from_url(url: Any) -> str | None:
    """The id of ``https://1fichier.com/?<id>`` (also alternate domains, ``&…`` suffixes and the legacy
    ``http://<id>.1fichier.com/`` form, §7)."""
    if not isinstance(url, str):
        return None
    url = url.strip()
    q = url.find("?")
    if q >= 0:
        m = re.match(r"([a-z0-9]{5,20})(?:&|$)", url[q + 1:])
        return m.group(1) if m else None
    m = re.fullmatch(r"https?://([a-z0-9]{5,20})\.1fichier\.com/?", url)
    return m.group(1) if m else None


# -- in-memory records ------------------------------------------------------------------------------------
@dataclass
class UploadSession:
    """One ``get_upload_server`` id (§6 step 1). A successful POST stores ``links``; the result is then kept
    for ``upload_result_ttl`` (§6 "kept for 2 h")."""

    id: str
    node: str
    created: float
    done_at: float | None = None
    links: list[dict[str, str]] = field(default_factory=list)


@dataclass
class Token:
    """A direct download link (§5)."""

    path: str
    file_id: str
    issued: float
    single: bool
    inline: bool
    gets: int = 0


# -- ASGI plumbing ----------------------------------------------------------------------------------------
class _Cut(Exception):
    """Raised by the truncating ``send`` once half the body went out."""


async def _send_reset(scope: Scope, send: Send) -> None:
    """Fault "reset": headers announcing a body that never comes, then the connection ends.

    Over hypercorn the stream is closed without the end of message (the client sees a protocol error);
    in-process the transport sees ``FAULT_HEADER`` and raises ``httpx.ReadError``.
    """
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"1"), (b"content-type", b"text/html"),
                            (FAULT_HEADER.encode(), b"reset")]})
    if scope.get(INPROCESS_KEY):
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _send_truncated(response: Any, scope: Scope, receive: Receive, send: Send) -> None:
    """Fault "truncate": forward only half of the announced Content-Length, then end the stream abruptly."""
    limit = 0
    sent = 0

    async def tsend(msg: dict[str, Any]) -> None:
        nonlocal limit, sent
        if msg["type"] == "http.response.start":
            headers = list(msg.get("headers", []))
            cl = next((int(v) for k, v in headers if k.lower() == b"content-length"), 0)
            limit = cl // 2
            headers.append((FAULT_HEADER.encode(), b"truncate"))
            await send({**msg, "headers": headers})
            return
        body = msg.get("body", b"")
        part = body[: max(0, limit - sent)]
        if part:
            sent += len(part)
            await send({"type": "http.response.body", "body": part, "more_body": True})
        if sent >= limit or not msg.get("more_body", False):
            raise _Cut

    try:
        await response(scope, receive, tsend)
    except* _Cut:
        pass
    if scope.get(INPROCESS_KEY):
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class FileBody:
    """Streams ``length`` bytes of a blob from ``start`` (§5): never loads the file, honours ``bandwidth``
    (bytes/s, sleeping with anyio so MockClock works) and counts ``bytes_down``."""

    def __init__(self, emu: Emulator, path: Any, start: int, length: int, status: int,
                 headers: dict[str, str], head: bool, ip: str) -> None:
        self.emu, self.path, self.start, self.length = emu, path, start, length
        self.status, self.headers, self.head, self.ip = status, headers, head, ip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()]
        await send({"type": "http.response.start", "status": self.status, "headers": raw})
        if self.head or self.length == 0:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        self.emu.locations.opened(self.ip)  # an open stream keeps its address the location (§3 #887)
        try:
            async with anyio.create_task_group() as tg:

                async def watch() -> None:
                    while True:
                        msg = await receive()
                        if msg["type"] == "http.disconnect":
                            tg.cancel_scope.cancel()
                            return

                tg.start_soon(watch)
                await self._stream(send)
                tg.cancel_scope.cancel()
        finally:
            self.emu.locations.closed(self.ip)

    async def _stream(self, send: Send) -> None:
        bw = self.emu.config.bandwidth
        chunk = 256 * 1024 if not bw else max(1, min(64 * 1024, bw // 10 or 1))
        left = self.length
        with open(self.path, "rb") as f:
            f.seek(self.start)
            while left > 0:
                data = f.read(min(chunk, left))
                if not data:  # file shrank underneath us (deleted): stop short
                    break
                left -= len(data)
                if bw:  # pace before sending, so the last chunk is paced too
                    await anyio.sleep(len(data) / bw)
                # count before sending: a client that has all it wants may disconnect while the
                # last send is still returning, which cancels this task
                self.emu._stats["bytes_down"] += len(data)
                await send({"type": "http.response.body", "body": data, "more_body": left > 0})
        if left > 0:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


Handler = Callable[[Request, "str | None"], Awaitable[Any]]


class Endpoint:
    """ASGI app for one named endpoint: counts the call, adds latency, applies faults (module docstring)."""

    def __init__(self, emu: Emulator, name: str, handler: Handler) -> None:
        assert name in ENDPOINTS
        self.emu, self.name, self.handler = emu, name, handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        emu = self.emu
        emu._stats["calls"][self.name] += 1
        if emu.config.latency > 0:
            await anyio.sleep(emu.config.latency)
        fault = emu.faults.take(self.name)
        if fault == "reset":
            await _send_reset(scope, send)
            return
        if fault == "5xx":
            response: Any = html_page("<h1>503 Service Temporarily Unavailable</h1>", 503)
        elif fault == "html":
            response = html_page("Veuillez patienter / Please wait")
        elif fault == "flood":
            response = _flood_response(emu.limiter.flood(client_ip(Request(scope))))
        else:
            response = await self.handler(Request(scope, receive), fault)
        if fault == "truncate":
            await _send_truncated(response, scope, receive, send)
        else:
            await response(scope, receive, send)


async def _drain(request: Request) -> None:
    """Consume and discard what is left of a request body (so an early answer is safe)."""
    try:
        async for _ in request.stream():
            pass
    except Exception:  # already consumed or the client went away: nothing left to drain
        pass


# -- the application --------------------------------------------------------------------------------------
class Api:
    """The handlers. Each docstring cites the doc section it implements."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.acct = emu.account
        self.cfg = emu.config

    # ---- common v1 pipeline -------------------------------------------------------------------------
    def v1(self, name: str, fn: Callable[[Request, dict[str, Any]], Any]) -> Handler:
        async def handler(request: Request, fault: str | None) -> Response:
            lim = self.emu.limiter
            # Read the (small) JSON body before any early answer: answering an HTTP/2 request
            # whose body is still arriving crashes hypercorn 0.18 (KeyError on the closed stream,
            # hypercorn #329), which the rclone fidelity run hit during flood locks.
            raw = await request.body()
            ip = client_ip(request)
            refusal = lim.before_auth(ip, name)  # §3, §4: the address's locks and 3/s window
            if refusal is not None:
                return _flood_response(refusal)
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
                    return _flood_response(refusal)
            try:
                body = json.loads(raw) if raw.strip() else {}
            except (ValueError, UnicodeDecodeError):
                return json_response({"status": "KO", "message": BAD_JSON}, 403)
            if not isinstance(body, dict):
                return json_response({"status": "KO", "message": BAD_JSON}, 403)
            pretty = bool(body.get("pretty"))
            try:
                folder_id = _int(body, "folder_id", 0) if name in ("folder/ls", "file/ls") else None
                refusal = lim.admit_endpoint(ip, user, name, folder_id)  # §2.1, §2.2, §2.3, §4
                if refusal is not None:
                    return _flood_response(refusal)
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
    def _folder(self, folder_id: int) -> Any:
        f = self.acct.folder(folder_id) if folder_id >= 0 else None
        if f is None:
            raise _not_found()  # [UNVERIFIED choice] unknown folder → 404 #469
        return f

    def _file(self, url: Any) -> FileRec:
        """Account file by URL; unknown → 404 ``Resource not found #469`` (§2.4, §3)."""
        fid = file_id_from_url(url)
        rec = self.acct.file(fid) if fid else None
        if rec is None or rec.folder_id is None:
            raise _not_found()
        return rec

    def _visible(self, rec: FileRec) -> bool:
        return self.emu._visible_at.get(rec.id, float("-inf")) <= self.emu.clock()

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

    # ---- §2.1 user/info -----------------------------------------------------------------------------
    STR_OPTS = ("mail_rm", "use_cdn", "default_port", "download_menu", "default_port_files", "ftp_report",
                "ftp_mode", "ru_report")
    INT_OPTS = ("page_limit", "default_domain", "ftp_did")

    def user_info(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.1: fields with rclone's exact JSON types. ``cold_storage`` = ``hot_storage`` = the bytes of every
        file of the account (seeded, uploaded and copied files; anonymous uploads excluded), counted afresh on
        each call so they move with uploads and deletes at once ([UNVERIFIED]: §2.1 names the fields but not
        the hot/cold split, so both carry the total). ``available_cold_storage`` = the quota (rclone's "total",
        §2.1), ``available_storage`` = quota − used. Over quota: ``upload_forbidden`` "1" and ``overquota`` 1
        ([UNVERIFIED choice] of values). Setters (§2.1 req) are stored; string fields stay strings, int fields
        ints."""
        opts = json.loads(self.acct.get_meta("user_options", "{}") or "{}")
        for k in self.STR_OPTS:
            if k in body:
                opts[k] = str(body[k])
        for k in self.INT_OPTS:
            if k in body:
                opts[k] = _int(body, k)
        self.acct.set_meta("user_options", json.dumps(opts))
        used = self.acct.used_bytes()
        q = self.emu.quota
        return {
            "status": "OK",
            # strings (§2.1 list)
            "email": "emulator@fichierfs.invalid",
            "offer": "1",
            "2fa": "0",
            "mail_rm": opts.get("mail_rm", "0"),
            "ftp_mode": opts.get("ftp_mode", "0"),
            "ftp_report": opts.get("ftp_report", "0"),
            "ru_report": opts.get("ru_report", "0"),
            "default_port": opts.get("default_port", "0"),
            "default_port_files": opts.get("default_port_files", "0"),
            "cdn": "0",
            "download_menu": opts.get("download_menu", "0"),
            "use_cdn": opts.get("use_cdn", "0"),
            "subscription_end": "2099-12-31 23:59:59",
            "stats_date": paris_date(self.emu.wall()),
            "upload_forbidden": "1" if used >= q else "0",
            # integers (§2.1 list)
            "ftp_did": opts.get("ftp_did", 0),
            "default_domain": opts.get("default_domain", 0),
            "page_limit": opts.get("page_limit", 1000),
            "default_quota": q,
            "default_cold_storage_quota": q,
            "hot_storage": used,
            "cold_storage": used,
            "allowed_cold_storage": q,
            "available_storage": max(0, q - used),
            "available_cold_storage": q,
            "overquota": 1 if used > q else 0,
        }

    # ---- §2.2 folder/ls -----------------------------------------------------------------------------
    def folder_ls(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.2: ``folder_id`` (0/absent = root "Root"); sub-folders use key ``id``; ``files:1`` adds ``items``.
        ``size`` is null (§2.2 "often null"). Empty lists are sent as ``[]`` ([UNVERIFIED choice]).

        "List folders is limited to 5 000 results" (§2.2): sub-folders and files together, sub-folders first,
        files oldest first; nothing tells the client that the reply was cut (no pagination, §2.2). ``files``
        is the number of files the reply may carry, capped like them ([UNVERIFIED choice]: a true count
        would give clients a truncation signal the doc does not promise)."""
        fid = _int(body, "folder_id", 0)
        f = self._folder(fid)
        cap = self.cfg.max_listing
        subs = self.acct.subfolders(fid)[:cap]
        files = self._listed_files(fid)[: cap - len(subs)]
        out: dict[str, Any] = {"status": "OK", "folder_id": f.id, "name": f.name}
        if f.id != 0:
            out["create_date"] = paris_date(f.create_time)
            out["pass"] = int(bool(f.password))
            if f.shared:
                out["shared"] = f"https://1fichier.com/dir/{f.id}"
        out["size"] = None
        out["files"] = len(files)
        out["sub_folders"] = [
            {"id": s.id, "name": s.name, "create_date": paris_date(s.create_time), "pass": int(bool(s.password))}
            for s in subs
        ]
        if _int(body, "files", 0):
            out["items"] = [self.list_item(r) for r in files]
        return out

    # ---- §2.3 file/ls -------------------------------------------------------------------------------
    def file_ls(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.3: ``{"status","count","items"}``; folder_id -1 = every file of the account.

        ``sent_before`` / ``sent_after`` (``YYYY-MM-DD HH:MM:SS``, Paris time like ``date``, §7) filter by
        upload date and combine; a malformed value is refused (KO ``Invalid parameter``). Bounds are strict
        (``date < sent_before``, ``date > sent_after``) unless ``date_filter_inclusive`` ([UNVERIFIED]; see
        config). At most ``max_listing`` (5 000) items, oldest first, with ``count`` = the items sent
        (§2.3 "The per-folder 30 s rule and the 5 000-result cap also apply here")."""
        fid = _int(body, "folder_id", 0)
        if fid != -1:
            self._folder(fid)
        before, after = _date(body, "sent_before"), _date(body, "sent_after")
        incl = self.cfg.date_filter_inclusive
        out = []
        for r in self._listed_files(fid):
            d = paris_date(r.upload_time)
            if before is not None and (d > before if incl else d >= before):
                continue
            if after is not None and (d < after if incl else d <= after):
                continue
            out.append(self.list_item(r))
            if len(out) >= self.cfg.max_listing:
                break
        return {"status": "OK", "count": len(out), "items": out}

    # ---- §2.4 file/info -----------------------------------------------------------------------------
    def file_info(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.4: by ``url``, or ``folder_id`` + exact ``filename`` (case-sensitive). Both ``content_type`` and
        ``content-type`` are sent. By url a new upload is found at once; by folder+name only once visible, and
        with duplicates the newest wins ([UNVERIFIED choice]s). The owner needs no ``pass``."""
        if body.get("url") is not None:
            r = self._file(body["url"])
        else:
            fid = _int(body, "folder_id", 0)
            name = _str(body, "filename", required=True)
            self._folder(fid)
            matches = [x for x in self._listed_files(fid) if x.filename == name]
            if not matches:
                raise _not_found()
            r = matches[-1]
        return {
            "status": "OK",
            "url": r.url,
            "filename": r.filename,
            "size": r.size,
            "date": paris_date(r.upload_time),
            "folder_id": r.folder_id,
            "path": self.acct.folder_path(r.folder_id),
            "checksum": r.whirlpool,
            "content_type": r.content_type,
            "content-type": r.content_type,
            "description": r.description,
            "pass": int(bool(r.password)),
            "no_ssl": r.no_ssl,
            "inline": r.inline,
            "cdn": r.cdn,
            "acl": {"ip": list(r.acl.get("ip", [])), "country": list(r.acl.get("country", [])),
                    "email": list(r.acl.get("email", [])), "premium": int(r.acl.get("premium", 0))},
        }

    # ---- §2.5 file/rm -------------------------------------------------------------------------------
    def file_rm(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.5 [LIST] ``{"files":[{"url","code"?}]}`` → ``removed``/``urls``. Unknown urls are skipped; when
        none is removed the reply is 404 #469 ([UNVERIFIED choice])."""
        files = body.get("files")
        if not isinstance(files, list) or not files:
            raise KO(BAD_PARAM.format("files"))
        removed = []
        for item in files:
            url = item.get("url") if isinstance(item, dict) else item
            fid = file_id_from_url(url)
            rec = self.acct.file(fid) if fid else None
            if rec is None:
                continue
            if rec.folder_id is None and (not isinstance(item, dict) or item.get("code") != rec.remove_code):
                continue  # not an account file: needs its removal code (§2.5)
            self.acct.delete_file(rec.id)
            self.emu._visible_at.pop(rec.id, None)
            removed.append(rec.url)
        if not removed:
            raise _not_found()
        return {"status": "OK", "removed": len(removed), "urls": removed}

    # ---- §2.6 file/mv -------------------------------------------------------------------------------
    def file_mv(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.6 [LIST]: ``urls``, ``destination_folder_id`` (must be present), ``rename`` (exactly one url).
        URLs are kept (§2.6 [sdk-net]). A ``rename`` equal to the current name is refused (§2.6 gotcha,
        #7856) even when moving elsewhere."""
        urls = body.get("urls")
        if not isinstance(urls, list) or not urls:
            raise KO(BAD_PARAM.format("urls"))
        dest = _int(body, "destination_folder_id", required=True)
        rename = _str(body, "rename")
        if rename is not None and len(urls) != 1:
            raise KO(RENAME_ONE_URL)
        self._folder(dest)
        recs = [self._file(u) for u in urls]
        if rename is not None:
            _check_name(rename, self.emu)
            if rename == recs[0].filename:
                raise KO(SAME_NAME_MOVE)
        for r in recs:
            self.acct.update_file(r.id, folder_id=dest)
            if rename is not None:
                self.acct.update_file(r.id, filename=rename)
        out: dict[str, Any] = {"status": "OK", "moved": len(recs), "urls": [r.url for r in recs]}
        if rename is not None:
            out["filename"] = rename
        return out

    # ---- §2.7 file/rename ---------------------------------------------------------------------------
    def file_rename(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.7 [LIST] ``{"urls":[{"url","filename"}]}``; same name → not renamed; none renamed → #312."""
        urls = body.get("urls")
        if not isinstance(urls, list) or not urls:
            raise KO(BAD_PARAM.format("urls"))
        done = []
        for item in urls:
            if not isinstance(item, dict):
                raise KO(BAD_PARAM.format("urls"))
            r = self._file(item.get("url"))
            new = item.get("filename")
            _check_name(new, self.emu)
            if new == r.filename:
                continue
            self.acct.update_file(r.id, filename=new)
            done.append({"url": r.url, "old_filename": r.filename, "new_filename": new})
        if not done:
            raise KO(NOT_RENAMED)
        return {"status": "OK", "renamed": len(done), "urls": done}

    # ---- §2.8 file/cp -------------------------------------------------------------------------------
    def file_cp(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.8 [LIST]: ``urls``, ``folder_id`` (0/absent = root), ``rename`` (one url). Each copy is a new
        file with a new URL, visible at once ([UNVERIFIED choice]: the visibility delay is for uploads)."""
        urls = body.get("urls")
        if not isinstance(urls, list) or not urls:
            raise KO(BAD_PARAM.format("urls"))
        dest = _int(body, "folder_id", 0)
        rename = _str(body, "rename")
        if rename is not None:
            if len(urls) != 1:
                raise KO(RENAME_ONE_URL)
            _check_name(rename, self.emu)
        self._folder(dest)
        recs = [self._file(u) for u in urls]
        if self.acct.used_bytes() + sum(r.size for r in recs) > self.emu.quota:
            raise KO(OVER_QUOTA)
        pairs = []
        for r in recs:
            new = self.acct.copy_file(r, dest, rename if rename is not None else r.filename)
            pairs.append({"from_url": r.url, "to_url": new.url})
        out: dict[str, Any] = {"status": "OK", "copied": len(pairs), "urls": pairs}
        if rename is not None:
            out["filename"] = rename
        return out

    # ---- §2.9 file/chattr ---------------------------------------------------------------------------
    def file_chattr(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.9 [LIST]: ``filename`` (single file only), ``description``, ``pass`` (≥6 chars, "" removes),
        ``no_ssl``, ``inline``, ``cdn``, ``acl``. No attribute sets a modification time."""
        urls = body.get("urls")
        if not isinstance(urls, list) or not urls:
            raise KO(BAD_PARAM.format("urls"))
        recs = [self._file(u) for u in urls]
        changes: dict[str, Any] = {}
        if "filename" in body:
            if len(urls) != 1:
                raise KO(RENAME_ONE_URL)
            changes["filename"] = _check_name(body["filename"], self.emu)
        if "description" in body:
            changes["description"] = _str(body, "description") or ""
        if "pass" in body:
            pw = _str(body, "pass") or ""
            if pw and len(pw) < 6:
                raise KO(PASS_TOO_SHORT)
            changes["password"] = pw
        for k in ("no_ssl", "inline", "cdn"):
            if k in body:
                changes[k] = 1 if _int(body, k) else 0
        if "acl" in body:
            acl = body["acl"]
            if not isinstance(acl, dict):
                raise KO(BAD_PARAM.format("acl"))
            changes["acl"] = {"ip": list(acl.get("ip") or []), "country": list(acl.get("country") or []),
                              "email": list(acl.get("email") or []), "premium": 1 if acl.get("premium") else 0}
        for r in recs:
            self.acct.update_file(r.id, **changes)
        return {"status": "OK", "updated": len(recs), "urls": [r.url for r in recs]}

    # ---- §2.10 file/scan ----------------------------------------------------------------------------
    def file_scan(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.10: files under 5 GB only; the emulator finds no virus."""
        r = self._file(body.get("url"))
        if r.size >= 5_000_000_000:
            raise KO(TOO_BIG_FOR_SCAN)
        return {"status": "OK"}

    # ---- §2.11 folder/mkdir -------------------------------------------------------------------------
    def folder_mkdir(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.11: ``name`` (≤250 chars, §7 characters), ``folder_id`` parent. A duplicate name in the same
        parent is refused with KO ``Folder already exists #365`` ([UNVERIFIED choice]: §2.11 says unknown; a
        refusal keeps folder paths unambiguous)."""
        name = _check_name(body.get("name"), self.emu)
        parent = _int(body, "folder_id", 0)
        self._folder(parent)
        if self.acct.subfolder_named(parent, name) is not None:
            raise KO(FOLDER_EXISTS)
        fid = self.acct.make_folder(parent, name)
        return {"status": "OK", "folder_id": fid, "name": name}

    # ---- §2.12 folder/rm ----------------------------------------------------------------------------
    def folder_rm(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.12: refused (KO ``Folder not empty #366``) unless the folder has no file and no sub-folder
        (files still invisible because of the visibility delay count). Root cannot be removed."""
        fid = _int(body, "folder_id", required=True)
        if fid == 0:
            raise KO(ROOT_FORBIDDEN)
        self._folder(fid)
        if not self.acct.folder_is_empty(fid):
            raise KO(FOLDER_NOT_EMPTY)
        self.acct.delete_folder(fid)
        return {"status": "OK", "message": "Folder removed"}

    # ---- §2.13 folder/mv ----------------------------------------------------------------------------
    def folder_mv(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.13: ``rename`` ignores ``destination_*`` (apidoc) unless ``folder_mv_rename_moves``; without
        ``rename`` the folder moves to ``destination_folder_id`` (absent = root, as rclone omits it). A name
        clash in the target parent is refused like mkdir ([UNVERIFIED choice])."""
        fid = _int(body, "folder_id", required=True)
        if fid == 0:
            raise KO(ROOT_FORBIDDEN)
        f = self._folder(fid)
        rename = _str(body, "rename")
        dest = _int(body, "destination_folder_id", 0)
        if rename is not None and not self.cfg.folder_mv_rename_moves:
            dest = f.parent
        new_name = f.name if rename is None else _check_name(rename, self.emu)
        self._folder(dest)
        if self.acct.is_descendant(dest, fid):
            raise KO(BAD_DESTINATION)
        clash = self.acct.subfolder_named(dest, new_name)
        if clash is not None and clash.id != fid:
            raise KO(FOLDER_EXISTS)
        self.acct.update_folder(fid, parent=dest, name=new_name)
        return {"status": "OK", "old_name": f.name, "new_name": new_name}

    # ---- §2.14 folder/share -------------------------------------------------------------------------
    def folder_share(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.14: ``share`` 0/1 (public URL ``https://1fichier.com/dir/<id>``), ``pass`` ≥6, ``shares``."""
        fid = _int(body, "folder_id", required=True)
        self._folder(fid)
        changes: dict[str, Any] = {}
        if "pass" in body:
            pw = _str(body, "pass") or ""
            if pw and len(pw) < 6:
                raise KO(PASS_TOO_SHORT)
            changes["password"] = pw
        if "share" in body:
            changes["shared"] = 1 if _int(body, "share") else 0
        if "shares" in body:
            shares = body["shares"]
            if not isinstance(shares, list):
                raise KO(BAD_PARAM.format("shares"))
            changes["shares"] = shares
        self.acct.update_folder(fid, **changes)
        f = self._folder(fid)
        out: dict[str, Any] = {"status": "OK", "message": "Share updated"}
        if f.shared:
            out["url"] = f"https://1fichier.com/dir/{fid}"
        return out

    # ---- §2.15 download/get_token -------------------------------------------------------------------
    def get_token(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.15: ``{"status":"OK","url":"https://a-1.1fichier.com/p<digits>"}`` (our own scheme://host:port
        when called on another host). ``single`` defaults to 0 (§5). Anonymous uploads are public links and
        can be fetched too; the owner needs no ``pass`` ([UNVERIFIED choice]s)."""
        fid = file_id_from_url(body.get("url"))
        rec = self.acct.file(fid) if fid else None
        if rec is None:
            raise _not_found()
        if not self.emu.locations.admit(client_ip(request)):  # §3 #887
            self.emu._stats["location_refusals"] += 1
            raise KO(ONE_LOCATION)
        while True:
            path = "/p" + str(secrets.randbelow(9 * 10**9) + 10**9)
            if path not in self.emu._tokens:
                break
        self.emu._tokens[path] = Token(path, rec.id, self.emu.clock(), bool(_int(body, "single", 0)),
                                      bool(_int(body, "inline", 0)))
        return {"status": "OK", "url": self._base(request, "https://a-1.1fichier.com") + path}

    # ---- §2.16 / §6 get_upload_server ---------------------------------------------------------------
    def get_upload_server(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§6 step 1: ``{"url": node host, "id": 10 random alphanumerics}``, fresh on every call; no status."""
        while True:
            uid = "".join(secrets.choice(_ALNUM) for _ in range(10))
            if uid not in self.emu._uploads:
                break
        node = self._node_host(request)
        self.emu._uploads[uid] = UploadSession(uid, node, self.emu.clock())
        return {"url": node, "id": uid}

    # ---- §2.17 remote/* -----------------------------------------------------------------------------
    def remote_request(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.17 (minimal): jobs are recorded and never executed — the emulator has no network
        ([UNVERIFIED choice]; ``execution_date`` stays "")."""
        urls = body.get("urls")
        if not isinstance(urls, list) or not urls:
            raise KO(BAD_PARAM.format("urls"))
        self._folder(_int(body, "folder_id", 0))
        headers = body.get("headers") or {}
        jid = len(self.emu._remote) + 1
        job = {"id": jid, "request_date": paris_date(self.emu.wall()), "execution_date": "", "urls": urls,
               "headers": headers}
        self.emu._remote[jid] = job
        return {"status": "OK", "id": jid, "date": job["request_date"], "urls": urls, "headers": headers}

    def remote_ls(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.17."""
        return {"status": "OK", "data": [{"id": j["id"], "request_date": j["request_date"],
                                          "execution_date": j["execution_date"]} for j in self.emu._remote.values()]}

    def remote_info(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.17."""
        job = self.emu._remote.get(_int(body, "id", required=True))
        if job is None:
            raise _not_found()
        return {"status": "OK", "id": job["id"], "request_date": job["request_date"],
                "execution_date": job["execution_date"], "links": list(job["urls"]), "result": []}

    # ---- §6 upload.cgi ------------------------------------------------------------------------------
    async def upload_cgi(self, request: Request, fault: str | None) -> Response:
        """§6 step 2–3: one POST carries up to 500 ``file[]`` parts + ``did``; success is a 302 to
        ``/end.pl?xid=<id>`` whose report lists every stored file (§6 "one end.pl report lists them all").

        Refused as a whole (an HTML page, HTTP 200 [UNVERIFIED choice], nothing stored, the id stays usable):
        no Content-Length (411, §6 "Content-Length is required"); an unknown or used id; no file part ("Pas de
        fichier", §6); more than ``max_files_per_upload`` (500) files or more than ``max_upload_size`` (500 GB)
        in all (§6 Limits); the upload process past ``max_upload_seconds`` (4 h, §6; the id is then spent);
        for an account upload, files that do not fit in the free space (§2.1 quota; whole-POST refusal is an
        [UNVERIFIED choice]).

        Refused per file (absent from the end.pl report while the others are stored; a POST whose files are all
        refused gets the first refusal's HTML page): an empty file (§6 rclone "refuses 0-byte files", §8.8), a
        file over ``max_file_size`` (300 GB, §6), a name 1fichier refuses (§7). Per-file refusal is the
        [UNVERIFIED] reading the write-back design relies on (issue 12: "a member missing from the report").

        ``did`` is honoured only with a valid key; an invalid ``did`` → root (§6). Without a valid key the
        files belong to no folder and get a removal code (§6 step 4 ``remove``). An id serves one successful
        POST ([UNVERIFIED choice]). Starlette spools parts above 1 MiB to temporary files on disk, and the
        bytes are then copied into the state dir while hashing (never held whole in memory)."""
        emu = self.emu
        uid = request.query_params.get("id", "")
        session = emu._uploads.get(uid)
        if "content-length" not in request.headers:
            await _drain(request)
            return html_page("<h1>411 Length Required</h1>", 411)
        if session is None or session.done_at is not None:
            await _drain(request)  # never answer before the body is in (hypercorn #329, see v1)
            return html_page("Identifiant d'upload invalide / Invalid upload id")
        try:
            form = await request.form(max_files=self.cfg.max_files_per_upload, max_fields=100,
                                      max_part_size=1024 * 1024)
        except HTTPException as exc:  # too many parts (§6 "up to 500 files per upload") or a malformed body
            await _drain(request)
            return html_page(f"Erreur d'envoi / Upload refused: {exc.detail}")
        try:
            parts = [p for p in form.getlist("file[]") if isinstance(p, UploadFile)]
            sizes = [int(p.size or 0) for p in parts]
            emu._stats["bytes_up"] += sum(sizes)
            if session.done_at is not None:  # a concurrent POST with the same id won the race
                return html_page("Identifiant d'upload invalide / Invalid upload id")
            if emu.clock() - session.created > self.cfg.max_upload_seconds:  # §6 "at most 4 h"
                emu._uploads.pop(uid, None)
                return html_page("Délai d'envoi dépassé / Upload time limit exceeded (4 h)")
            if not parts:
                return html_page("Pas de fichier")
            if sum(sizes) > self.cfg.max_upload_size:
                return html_page("Envoi trop gros / Upload too big (500 GB per upload)")
            accepted: list[UploadFile] = []
            refusals: list[str] = []
            for p, size in zip(parts, sizes, strict=True):
                why = self._part_refusal(p.filename, size)
                if why is None:
                    accepted.append(p)
                else:
                    refusals.append(why)
            emu._stats["refused_files"] += len(refusals)
            if not accepted:
                return html_page(refusals[0])
            authed = self._authenticated(request)
            folder_id: int | None = None
            remove = ""
            if authed:
                folder_id = 0
                did = form.get("did")
                if isinstance(did, str) and re.fullmatch(r"\d+", did.strip()):
                    if self.acct.folder(int(did)) is not None:
                        folder_id = int(did)
                if self.acct.used_bytes() + sum(int(p.size or 0) for p in accepted) > emu.quota:
                    emu._stats["refused_files"] += len(accepted)
                    return html_page("Quota d'espace disque atteint / Storage quota exceeded")
            links = []
            now = emu.clock()
            for p in accepted:
                blob = self.acct.new_blob()
                p.file.seek(0)
                if (p.size or 0) > 8 * 1024 * 1024:
                    size, wp = await anyio.to_thread.run_sync(store_stream, p.file, blob)
                else:
                    size, wp = store_stream(p.file, blob)
                if not authed:
                    remove = "".join(secrets.choice(_ALNUM) for _ in range(10))
                ctype = mimetypes.guess_type(p.filename or "")[0] or "application/octet-stream"
                rec = self.acct.add_file(folder_id=folder_id, filename=p.filename or "", blob=blob, size=size,
                                         whirlpool_hex=wp, content_type=ctype, remove_code=remove)
                if self.cfg.visibility_delay > 0:
                    emu._visible_at[rec.id] = now + self.cfg.visibility_delay
                links.append({"download": rec.url, "filename": rec.filename, "remove": remove,
                              "size": str(rec.size), "whirlpool": rec.whirlpool})
            session.links = links
            session.done_at = now
        finally:
            await form.close()
        body = f'<html><body><a href="/end.pl?xid={uid}">end.pl</a></body></html>'.encode()
        return Response(body, status_code=302, headers={"Location": f"/end.pl?xid={uid}"},
                        media_type="text/html; charset=utf-8")

    def _part_refusal(self, filename: str | None, size: int) -> str | None:
        """Why one ``file[]`` part is refused (its HTML message), or None (§6 Limits, §7 Names, §8.8)."""
        if size == 0:
            return "Fichier vide / Empty file"
        if size > self.cfg.max_file_size:
            return "Fichier trop gros / File too big (300 GB per file)"
        if name_error(filename, self.cfg.max_name) is not None:
            return "Nom de fichier invalide / Invalid file name"
        return None

    # ---- §6 end.pl ----------------------------------------------------------------------------------
    async def end_pl(self, request: Request, fault: str | None) -> Response:
        """§6 step 4: with header ``JSON: 1`` → ``{"incoming":0,"links":[{download, filename, remove,
        size (string), whirlpool}]}``; without it an HTML page. Repeatable (rclone follows the 302 and then
        calls it with the header, §8). Unknown or not-yet-uploaded id → HTML error page."""
        emu = self.emu
        uid = request.query_params.get("xid", "")
        s = emu._uploads.get(uid)
        if s is not None and s.done_at is not None and emu.clock() - s.done_at > self.cfg.upload_result_ttl:
            emu._uploads.pop(uid, None)
            s = None
        if s is None or s.done_at is None:
            return html_page("Pas de fichier / Upload not found")
        if request.headers.get("json", "").strip() == "1":
            if fault == "no_links":
                return json_response({"incoming": 0})
            return json_response({"incoming": 0, "links": s.links})
        rows = "".join(f"<tr><td>{lk['filename']}</td><td><a href=\"{lk['download']}\">{lk['download']}</a>"
                       f"</td><td>{lk['size']}</td></tr>" for lk in s.links)
        return html_page(f"<table>{rows}</table>")

    # ---- §5 token download --------------------------------------------------------------------------
    async def download(self, request: Request, fault: str | None) -> Any:
        """§5: a token serves GET/HEAD with ``Accept-Ranges: bytes``, Content-Length, ETag, Last-Modified,
        ``application/octet-stream`` and Content-Disposition; Range → 206 + Content-Range (416 when
        unsatisfiable; a malformed or multi-range header is ignored → 200, [UNVERIFIED choice]).

        Token validity (reading of §5, [UNVERIFIED choice]): usable from issue to issue + ``token_ttl``.
        ``single:1`` serves exactly one GET (HEAD does not consume it). ``single:0`` tokens are reusable
        within ``token_ttl``; once a GET was served within ``token_ttl``, further GETs (resumes) are allowed
        until issue + ``recovery_window`` ("Recovery allowed for 30 minutes"). Otherwise (expired, unknown,
        used up, file deleted) → 200 ``text/html`` page, never the file."""
        emu = self.emu
        tok = emu._tokens.get(request.url.path)
        head = request.method == "HEAD"
        now = emu.clock()
        dead = html_page("Lien expiré / Expired link. Téléchargement non autorisé.")
        if tok is None:
            return dead
        age = now - tok.issued
        if tok.single:
            if tok.gets >= 1 or age > self.cfg.token_ttl:
                return dead
        elif age > self.cfg.token_ttl and not (tok.gets >= 1 and age <= self.cfg.recovery_window):
            return dead
        rec = self.acct.file(tok.file_id)
        if rec is None:
            return dead
        ip = client_ip(request)
        if not emu.locations.admit(ip):  # §3 "or download made, from a second IP" #887
            emu._stats["location_refusals"] += 1
            return html_page(ONE_LOCATION, 403)
        if not head:
            tok.gets += 1
        size = rec.size
        ascii_name = rec.filename.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
        disp = "inline" if tok.inline else "attachment"
        headers = {
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f"{disp}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(rec.filename)}",
            "ETag": f'"{rec.whirlpool[:32]}"',
            "Last-Modified": email.utils.formatdate(rec.upload_time, usegmt=True),
        }
        start, length, status = 0, size, 200
        rng = _parse_range(request.headers.get("range"), size)
        if rng == "unsatisfiable":
            return Response(b"", status_code=416, headers={"Content-Range": f"bytes */{size}",
                                                           "Accept-Ranges": "bytes"})
        if rng is not None:
            start, end = rng
            length = end - start + 1
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        headers["Content-Length"] = str(length)
        return FileBody(emu, self.acct.blob_path(rec), start, length, status, headers, head, ip)

    # ---- /_emulator control routes ------------------------------------------------------------------
    async def ctl_stats(self, request: Request) -> Response:
        return json_response(self.emu.stats())

    async def ctl_reset(self, request: Request) -> Response:
        self.emu.reset_stats()
        return json_response({"status": "OK"})

    async def ctl_unlock(self, request: Request) -> Response:
        self.emu.reset_limits()
        return json_response({"status": "OK"})

    async def ctl_client(self, request: Request) -> Response:
        """``{"status":"OK","ip": the address this request came from}``: check a source-address set-up."""
        return json_response({"status": "OK", "ip": client_ip(request)})

    async def ctl_quota(self, request: Request) -> Response:
        """GET: ``{"status","quota","used"}`` (bytes); POST ``{"bytes": N}`` sets the quota first."""
        if request.method == "POST":
            try:
                b = await request.json()
                self.emu.set_quota(int(b["bytes"]))
            except (ValueError, KeyError, TypeError) as e:
                return json_response({"status": "KO", "message": str(e)}, 400)
        return json_response({"status": "OK", "quota": self.emu.quota, "used": self.emu.used_bytes()})

    async def ctl_fault(self, request: Request) -> Response:
        try:
            b = await request.json()
            self.emu.inject(b["endpoint"], b["kind"], int(b.get("nth", 1)), int(b.get("count", 1)))
        except (ValueError, KeyError, TypeError) as e:
            return json_response({"status": "KO", "message": str(e)}, 400)
        return json_response({"status": "OK"})


def _parse_range(value: str | None, size: int) -> tuple[int, int] | str | None:
    """One ``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` range → (first, last) inclusive; None to ignore."""
    if not value:
        return None
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", value)
    if not m or (m.group(1) == "" and m.group(2) == ""):
        return None
    a, b = m.group(1), m.group(2)
    if a == "":
        n = int(b)
        if n == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - n), size - 1
    first = int(a)
    last = size - 1 if b == "" else min(int(b), size - 1)
    if b != "" and int(b) < first:
        return None
    if first >= size:
        return "unsatisfiable"
    return first, last


def _loopback_only(fn: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    async def wrapped(request: Request) -> Response:
        host = request.client.host if request.client else "127.0.0.1"
        if not (host.startswith("127.") or host in ("::1", "localhost")):
            return json_response({"status": "KO", "message": "loopback only"}, 403)
        return await fn(request)

    return wrapped


def build_app(emu: Emulator) -> Starlette:
    """All routes of the §8 checklist plus the /_emulator control routes."""
    api = Api(emu)
    v1 = {
        "user/info": api.user_info,
        "folder/ls": api.folder_ls,
        "folder/mkdir": api.folder_mkdir,
        "folder/rm": api.folder_rm,
        "folder/mv": api.folder_mv,
        "folder/share": api.folder_share,
        "file/ls": api.file_ls,
        "file/info": api.file_info,
        "file/rm": api.file_rm,
        "file/mv": api.file_mv,
        "file/rename": api.file_rename,
        "file/cp": api.file_cp,
        "file/chattr": api.file_chattr,
        "file/scan": api.file_scan,
        "download/get_token": api.get_token,
        "upload/get_upload_server": api.get_upload_server,
        "remote/request": api.remote_request,
        "remote/ls": api.remote_ls,
        "remote/info": api.remote_info,
    }
    assert set(v1) == set(API_ENDPOINTS)
    routes: list[Route] = []
    for name, fn in v1.items():
        methods = ["GET", "POST"] if name == "upload/get_upload_server" else ["POST"]  # §1 Methods row
        routes.append(Route(f"/v1/{name}.cgi", Endpoint(emu, name, api.v1(name, fn)), methods=methods))
    routes += [
        Route("/upload.cgi", Endpoint(emu, "upload.cgi", api.upload_cgi), methods=["POST"]),
        Route("/end.pl", Endpoint(emu, "end.pl", api.end_pl), methods=["GET"]),
        Route("/p{token:int}", Endpoint(emu, "download", api.download), methods=["GET", "HEAD"]),  # §5
        Route("/_emulator/stats", _loopback_only(api.ctl_stats), methods=["GET"]),
        Route("/_emulator/reset", _loopback_only(api.ctl_reset), methods=["POST"]),
        Route("/_emulator/fault", _loopback_only(api.ctl_fault), methods=["POST"]),
        Route("/_emulator/unlock", _loopback_only(api.ctl_unlock), methods=["POST"]),
        Route("/_emulator/quota", _loopback_only(api.ctl_quota), methods=["GET", "POST"]),
        Route("/_emulator/client", _loopback_only(api.ctl_client), methods=["GET"]),
    ]
    return Starlette(routes=routes)
