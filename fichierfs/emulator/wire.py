"""What every handler shares: 1fichier's messages (§3), KO replies, JSON and HTML responses, request-body
parameters, the client address, and the wire-level faults (reset, truncate).

Errors are HTTP 403 + ``{"status":"KO","message":"… #NNN"}``, except ``Resource not found #469`` which is
HTTP 404 (§3).
"""

from __future__ import annotations

import json
import re
import string
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .rules import name_error

#: Scope key set by ``Emulator.transport()`` so that faults are signalled to the in-process transport.
INPROCESS_KEY = "fichierfs.emulator.inprocess"
#: Response header telling the in-process transport to turn the reply into a transport error.
FAULT_HEADER = "x-emulator-fault"

ALNUM = string.ascii_letters + string.digits

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


def not_found() -> KO:
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


def flood_response(message: str) -> Response:
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
def int_param(body: dict[str, Any], key: str, default: int | None = None, *, required: bool = False) -> int:
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


def str_param(body: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    v = body.get(key)
    if v is None:
        if required:
            raise KO(BAD_PARAM.format(key))
        return None
    if not isinstance(v, str):
        raise KO(BAD_PARAM.format(key))
    return v


_DATE_RE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def date_param(body: dict[str, Any], key: str) -> str | None:
    """A ``YYYY-MM-DD HH:MM:SS`` parameter (§2.3), or None when absent/empty; anything else is refused."""
    v = body.get(key)
    if v is None or v == "":
        return None
    if not isinstance(v, str) or not _DATE_RE.fullmatch(v.strip()):
        raise KO(BAD_PARAM.format(key))
    return v.strip()


def check_name(name: Any, max_len: int) -> str:
    if name_error(name, max_len) is not None:
        raise KO(BAD_NAME)
    assert isinstance(name, str)
    return name


class _Cut(Exception):
    """Raised by the truncating ``send`` once half the body went out."""


async def send_reset(scope: Scope, send: Send) -> None:
    """Fault "reset": headers announcing a body that never comes, then the connection ends.

    Over hypercorn the stream is closed without the end of message (the client sees a protocol error);
    in-process the transport sees ``FAULT_HEADER`` and raises ``httpx.ReadError``.
    """
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"1"), (b"content-type", b"text/html"),
                            (FAULT_HEADER.encode(), b"reset")]})
    if scope.get(INPROCESS_KEY):
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def send_truncated(response: Any, scope: Scope, receive: Receive, send: Send) -> None:
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


async def drain(request: Request) -> None:
    """Consume and discard what is left of a request body (so an early answer is safe)."""
    try:
        async for _ in request.stream():
            pass
    except Exception:  # already consumed or the client went away: nothing left to drain
        pass
