"""FichierClient: one async method per 1fichier endpoint, over an injected ``httpx.AsyncClient``.

This layer is deliberately dumb (design.md Part B §7, §9): one method = one HTTP request,
no retries, no caching, no pacing. The scheduler (``fichierfs.scheduler``) is its only caller
and owns every budget: ``await scheduler.call(client.folder_ls, folder_id, lane=…)``. Each
method carries its endpoint name (``@endpoint("folder/ls")``), from which the scheduler takes
the budgets and the coalescing rule. Method names are the endpoint path with ``/`` replaced by
``_`` (``folder/ls`` → :meth:`FichierClient.folder_ls`), plus the three non-API legs
:meth:`upload_post` (``upload.cgi``), :meth:`upload_end` (``end.pl``) and
:meth:`download_range` (a GET of a download link).

Wire facts (docs/1fichier-api.md):

* every v1 call is ``POST <base>/<endpoint>.cgi`` with a JSON body, ``Content-Type:
  application/json`` (else ``#24``) and ``Authorization: Bearer <key>`` (§1);
* errors arrive mostly as HTTP 403 with ``{"status":"KO","message":"… #NNN"}`` (§3);
  they are parsed into :mod:`fichierfs.errors` classes that keep the code;
* an HTML page where JSON was expected is :class:`~fichierfs.errors.BadReply` (§3, §6);
* the upload has three legs: get_upload_server, multipart POST of ``file[]`` to the node
  answered by 302 to end.pl, then ``GET end.pl`` with the header ``JSON: 1`` (§6).

The API key lives in a :class:`Secret` whose ``repr``/``str`` are redacted; it is sent only in
the Authorization header and never placed in an exception message or a log line. Download
links are credentials too: errors and logs name the file url, never the link.
"""

from __future__ import annotations

import html
import logging
import os
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, TypeVar
from urllib.parse import urljoin, urlsplit

import httpx

from fichierfs.errors import (
    ApiError,
    BadReply,
    FichierError,
    LinkExpired,
    NotFound,
    ServerError,
    UploadFailed,
    api_error_from_reply,
    parse_code,
)
from fichierfs.models import (
    AccountInfo,
    CopyResult,
    DownloadLink,
    FileUrl,
    FolderId,
    FolderListing,
    RemoteFile,
    RenameResult,
    UploadedFile,
    UploadServer,
)

__all__ = ["API_BASE", "ENDPOINTS", "Secret", "UploadSource", "FichierClient", "endpoint", "endpoint_of"]

log = logging.getLogger(__name__)

API_BASE = "https://api.1fichier.com/v1"
"""The real API base URL (§1)."""

_ENDPOINT_ATTR = "__fichier_endpoint__"

ENDPOINTS: dict[str, str] = {}
"""Client method name → endpoint name, filled by :func:`endpoint` (``"folder_ls"`` → ``"folder/ls"``)."""

_Method = TypeVar("_Method", bound=Callable[..., Awaitable[Any]])
_Model = TypeVar("_Model")


def endpoint(name: str) -> Callable[[_Method], _Method]:
    """Mark a client method as the call of endpoint ``name`` (unchanged otherwise).

    ``name`` is the API path without ``.cgi`` (``"folder/ls"``, §2) or one of the three legs
    that do not touch the API: ``"upload.cgi"``, ``"end.pl"``, ``"download"``. The scheduler
    reads it (:func:`endpoint_of`) to find the budgets and the coalescing rule of a call.
    """

    def mark(fn: _Method) -> _Method:
        setattr(fn, _ENDPOINT_ATTR, name)
        ENDPOINTS[fn.__name__] = name
        return fn

    return mark


def endpoint_of(fn: object) -> str | None:
    """The endpoint a client method calls (also through a bound method), None if unmarked."""
    name = getattr(fn, _ENDPOINT_ATTR, None)
    return name if isinstance(name, str) else None


class Secret:
    """A string that never shows itself: ``repr``/``str``/format give ``<redacted>``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself; only for building the Authorization header."""
        return self._value

    def __repr__(self) -> str:
        return "Secret(<redacted>)"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __reduce__(self) -> Any:  # never pickled along with anything
        raise TypeError("Secret is not picklable")


@dataclass(frozen=True, slots=True)
class UploadSource:
    """One file of an upload POST (§6.2).

    Attributes:
        name: the remote (already encoded) file name.
        path: a local file whose content is sent (streamed, never read whole into memory).
        size: its size in bytes (> 0: 1fichier refuses empty files, §6 limits).
        file: an open binary file object to send instead of ``path`` (a stable snapshot the
            caller holds; read from its start, not closed here).
    """

    name: str
    path: os.PathLike[str] | str
    size: int
    file: Any = None


def _html_text(body: str, limit: int = 200) -> str:
    """The visible text of an HTML page, shortened (for error messages)."""
    text = re.sub(r"(?is)<(script|style).*?</\1>", " ", body)
    text = re.sub(r"<[^>]+>", " ", text)
    text = html.unescape(re.sub(r"\s+", " ", text)).strip()
    return text[:limit] or "empty page"


def _is_html(resp: httpx.Response) -> bool:
    ctype = resp.headers.get("content-type", "").lower()
    return "html" in ctype


class FichierClient:
    """The 1fichier v1 API, one method per endpoint (§2). No retries, no caching, no pacing.

    Args:
        http: the shared ``httpx.AsyncClient`` (its transport may be the in-process emulator).
        api_key: the account's API key (§1). Kept in a :class:`Secret`.
        base_url: the API base, ``https://api.1fichier.com/v1`` by default; the scheme of
            upload nodes follows it (``http`` only for a loopback emulator).

    Every method raises :class:`~fichierfs.errors.ApiError` subclasses for KO replies
    (FloodLocked, AuthError, NotFound, NotAllowed, RequestRejected), ServerError for 5xx,
    connection failures and time-outs, and BadReply for a reply that is not the documented JSON.
    """

    def __init__(self, http: httpx.AsyncClient, api_key: str | Secret, *, base_url: str = API_BASE) -> None:
        self._http = http
        self._key = api_key if isinstance(api_key, Secret) else Secret(api_key)
        self.base_url = base_url.rstrip("/")
        self._scheme = urlsplit(self.base_url).scheme or "https"

    def __repr__(self) -> str:
        return f"FichierClient(base_url={self.base_url!r}, api_key=<redacted>)"

    # ------------------------------------------------------------------ plumbing
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key.reveal()}"}

    async def _send(self, endpoint: str, method: str, url: str, **kw: Any) -> httpx.Response:
        """One HTTP exchange; transport failures become ServerError (type name only, no URL)."""
        try:
            return await self._http.request(method, url, **kw)
        except httpx.TimeoutException as exc:
            err = ServerError(f"{endpoint}: time-out ({type(exc).__name__})")
            err.reached_server = not isinstance(exc, httpx.ConnectTimeout)
            raise err from None
        except httpx.TransportError as exc:
            err = ServerError(f"{endpoint}: connection failed ({type(exc).__name__})")
            err.reached_server = not isinstance(exc, httpx.ConnectError)
            raise err from None

    def _parse(self, endpoint: str, resp: httpx.Response) -> dict[str, Any]:
        """Parse a v1 reply into a dict or raise the right error (§3)."""
        status = resp.status_code
        try:
            data = resp.json()
        except ValueError:
            data = None
        if isinstance(data, dict):
            message = str(data.get("message") or "")
            ko = str(data.get("status") or "").upper() == "KO"
            bare_error = "status" not in data and parse_code(message) is not None  # e.g. "#24" (§1)
            if status >= 500 and not message:
                raise ServerError(f"{endpoint}: HTTP {status}")
            if ko or bare_error or status >= 400:
                raise api_error_from_reply(message or f"HTTP {status}", http_status=status, endpoint=endpoint)
            return data
        if status >= 500:
            raise ServerError(f"{endpoint}: HTTP {status}")
        if status == 404:
            raise NotFound(f"{endpoint}: not found", http_status=404, endpoint=endpoint)
        what = f"HTML page: {_html_text(resp.text)}" if _is_html(resp) else "not JSON"
        raise BadReply(f"{endpoint}: HTTP {status}, {what}")

    async def _call(self, endpoint: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """POST ``<base>/<endpoint>.cgi`` with a JSON body (§1) and return the parsed reply."""
        log.debug("api %s", endpoint)
        resp = await self._send(
            endpoint,
            "POST",
            f"{self.base_url}/{endpoint}.cgi",
            json=dict(body or {}),
            headers=self._auth(),
        )
        return self._parse(endpoint, resp)

    @staticmethod
    def _field(endpoint: str, data: Mapping[str, Any], key: str) -> Any:
        try:
            return data[key]
        except KeyError:
            raise BadReply(f"{endpoint}: reply lacks {key!r}") from None

    # ------------------------------------------------------------------ account
    @endpoint("user/info")
    async def user_info(self) -> AccountInfo:
        """``user/info`` (§2.1): account and quota. Limited to 1 per 5 min per user (§4)."""
        data = await self._call("user/info")
        return self._model("user/info", AccountInfo.from_json, data)

    # ------------------------------------------------------------------ folders
    @endpoint("folder/ls")
    async def folder_ls(self, folder_id: int = 0, *, files: bool = True) -> FolderListing:
        """``folder/ls`` (§2.2): sub-folders, and with ``files`` every file, of one folder in one call.

        Limits (§4): the same folder ≤ 1 per 30 s, ≈ 1 listing per 3 s overall, ≤ 5 000 entries.
        """
        body: dict[str, Any] = {"folder_id": int(folder_id)}
        if files:
            body["files"] = 1
        data = await self._call("folder/ls", body)
        return self._model("folder/ls", lambda d: FolderListing.from_json(d, int(folder_id)), data)

    @endpoint("folder/mkdir")
    async def folder_mkdir(self, parent_id: int, name: str) -> FolderId:
        """``folder/mkdir`` (§2.11): create ``name`` (≤ 250 chars) in ``parent_id``; returns the new id."""
        data = await self._call("folder/mkdir", {"name": name, "folder_id": int(parent_id)})
        return FolderId(self._model("folder/mkdir", lambda d: int(d["folder_id"]), data))

    @endpoint("folder/rm")
    async def folder_rm(self, folder_id: int) -> None:
        """``folder/rm`` (§2.12): remove a folder (refused unless empty, [UNVERIFIED] per §2.12)."""
        await self._call("folder/rm", {"folder_id": int(folder_id)})

    @endpoint("folder/mv")
    async def folder_mv(
        self, folder_id: int, *, destination_folder_id: int | None = None, rename: str | None = None
    ) -> None:
        """``folder/mv`` (§2.13): move (``destination_folder_id``) or rename (``rename``) a folder.

        Per the apidoc ``rename`` ignores the destination, so a move plus a rename takes two
        calls (§2.13); pass exactly one of the two.

        Raises:
            ValueError: neither or both of destination_folder_id and rename given.
        """
        if (destination_folder_id is None) == (rename is None):
            raise ValueError("folder_mv takes exactly one of destination_folder_id or rename (§2.13)")
        body: dict[str, Any] = {"folder_id": int(folder_id)}
        if rename is not None:
            body["rename"] = rename
        else:
            body["destination_folder_id"] = int(destination_folder_id)  # type: ignore[arg-type]
        await self._call("folder/mv", body)

    # ------------------------------------------------------------------ files
    @endpoint("file/ls")
    async def file_ls(
        self, folder_id: int = 0, *, sent_before: str | None = None, sent_after: str | None = None
    ) -> tuple[RemoteFile, ...]:
        """``file/ls`` (§2.3): the files of one folder (``-1``: the whole account, ≤ 1 per hour, §4).

        ``sent_before``/``sent_after`` are ``"YYYY-MM-DD HH:MM:SS"`` Paris time (§2.3).
        """
        body: dict[str, Any] = {"folder_id": int(folder_id)}
        if sent_before:
            body["sent_before"] = sent_before
        if sent_after:
            body["sent_after"] = sent_after
        data = await self._call("file/ls", body)
        fid = None if folder_id == -1 else int(folder_id)
        return self._model(
            "file/ls", lambda d: tuple(RemoteFile.from_json(x, fid) for x in (d.get("items") or ())), data
        )

    @endpoint("file/info")
    async def file_info(self, url: str) -> RemoteFile:
        """``file/info`` (§2.4): one file's metadata, including ``description`` and ``folder_id``.

        Raises NotFound (#469, ENOENT) or NotAllowed (#631, EACCES).
        """
        data = await self._call("file/info", {"url": url})
        return self._model("file/info", RemoteFile.from_json, data)

    @endpoint("file/info")
    async def file_info_by_name(self, folder_id: int, filename: str) -> RemoteFile:
        """``file/info`` (§2.4) by ``folder_id`` + exact ``filename`` (the remote, encoded name):
        the file of that name in that folder, without listing it.

        Raises NotFound (#469, ENOENT) when the folder holds no such file.
        """
        data = await self._call("file/info", {"folder_id": int(folder_id), "filename": filename})
        return self._model("file/info", RemoteFile.from_json, data)

    @endpoint("file/rm")
    async def file_rm(self, urls: Sequence[str]) -> int:
        """``file/rm`` [LIST] (§2.5): delete files in one call; returns ``removed``."""
        data = await self._call("file/rm", {"files": [{"url": u} for u in urls]})
        return int(data.get("removed") or 0)

    @endpoint("file/mv")
    async def file_mv(
        self, urls: Sequence[str], destination_folder_id: int, *, rename: str | None = None
    ) -> tuple[FileUrl, ...]:
        """``file/mv`` [LIST] (§2.6): move files to ``destination_folder_id`` (0 = root).

        ``rename`` only with exactly one url, and never equal to the current name (§2.6,
        §8.11: leave it out when the name is unchanged). Returns the new urls.

        Raises:
            ValueError: ``rename`` with several urls.
        """
        if rename is not None and len(urls) != 1:
            raise ValueError("file/mv takes rename only with exactly one url (§2.6)")
        body: dict[str, Any] = {"urls": list(urls), "destination_folder_id": int(destination_folder_id)}
        if rename is not None:
            body["rename"] = rename
        data = await self._call("file/mv", body)
        return tuple(FileUrl(str(u)) for u in (data.get("urls") or ()))

    @endpoint("file/rename")
    async def file_rename(self, pairs: Sequence[tuple[str, str]]) -> tuple[RenameResult, ...]:
        """``file/rename`` [LIST] (§2.7): rename files in place; ``pairs`` = (url, new name).

        Renaming to the same name answers ``No file has been renamed #312`` (RequestRejected).
        """
        data = await self._call("file/rename", {"urls": [{"url": u, "filename": n} for u, n in pairs]})

        def parse(d: Mapping[str, Any]) -> tuple[RenameResult, ...]:
            return tuple(
                RenameResult(FileUrl(str(x["url"])), str(x.get("old_filename", "")), str(x.get("new_filename", "")))
                for x in (d.get("urls") or ())
                if isinstance(x, dict)
            )

        return self._model("file/rename", parse, data)

    @endpoint("file/cp")
    async def file_cp(
        self, urls: Sequence[str], folder_id: int, *, rename: str | None = None
    ) -> tuple[CopyResult, ...]:
        """``file/cp`` [LIST] (§2.8): server-side copy into ``folder_id``; each copy gets a new url."""
        if rename is not None and len(urls) != 1:
            raise ValueError("file/cp takes rename only with exactly one url (§2.8)")
        body: dict[str, Any] = {"urls": list(urls), "folder_id": int(folder_id)}
        if rename is not None:
            body["rename"] = rename
        data = await self._call("file/cp", body)
        return self._model(
            "file/cp",
            lambda d: tuple(
                CopyResult(FileUrl(str(x["from_url"])), FileUrl(str(x["to_url"]))) for x in (d.get("urls") or ())
            ),
            data,
        )

    @endpoint("file/chattr")
    async def file_chattr(self, urls: Sequence[str], **attrs: Any) -> int:
        """``file/chattr`` [LIST] (§2.9): set ``description``, ``pass``, ``inline``, ``cdn``, ``acl``…

        ``filename`` only with exactly one url. No attribute sets a modification time (§2.9).
        Returns ``updated``.
        """
        if "filename" in attrs and len(urls) != 1:
            raise ValueError("file/chattr takes filename only with exactly one url (§2.9)")
        data = await self._call("file/chattr", {"urls": list(urls), **attrs})
        return int(data.get("updated") or 0)

    # ------------------------------------------------------------------ download
    @endpoint("download/get_token")
    async def download_get_token(self, url: str, *, single: bool = False) -> DownloadLink:
        """``download/get_token`` (§2.15): a direct link valid 5 minutes (§5).

        ``single=False`` (the default, unlike rclone) lets one link serve many ranged GETs
        within its validity (§5: ``single:0`` allows sub-requests). The caller records when it
        got the link (``dataclasses.replace(link, issued_at=now)``): this layer has no clock.
        """
        data = await self._call("download/get_token", {"url": url, "single": 1 if single else 0})
        link = self._field("download/get_token", data, "url")
        return DownloadLink(url=str(link), file_url=FileUrl(url), single=single)

    @endpoint("download")
    async def download_range(self, link: DownloadLink, start: int, end: int) -> bytes:
        """GET bytes ``[start, end)`` of a file through its direct link (§5: Range → 206).

        Args:
            link: from :meth:`download_get_token`.
            start: first byte offset (≥ 0).
            end: one past the last byte wanted (> start); clipped by the server at the file's end.

        Raises:
            LinkExpired: the link answered an HTML page instead of the file (§5).
            ServerError: 5xx, connection reset, or a body shorter than announced.
            NotFound: HTTP 404/410.
        """
        if start < 0 or end <= start:
            raise ValueError(f"bad range [{start}, {end})")
        pieces = await self.download_chunks(link, start, end, end - start)
        return (pieces[0] if pieces else None) or b""  # one piece of the whole size, or b"" for HTTP 416

    @endpoint("download")
    async def download_chunks(
        self, link: DownloadLink, start: int, end: int, chunk_size: int,
        on_chunk: Callable[[int, bytes], Awaitable[None]] | None = None,
    ) -> list[bytes | None]:
        """Like :meth:`download_range`, but the bytes arrive cut into ``chunk_size`` pieces (the last may be
        shorter), each joined once from the pieces received: no growing buffer, no zero-filled buffer, no
        second copy to cut a window into cache chunks (issue 15.5). With ``on_chunk``, each piece ``i`` (counted
        from ``start``) is handed to ``await on_chunk(i, piece)`` as soon as it is full, before the rest arrives (the
        read path gives it to its readers at once), and is None in the returned list (not kept here: a reader
        may drop it before the rest arrives). Same errors as :meth:`download_range`."""
        if start < 0 or end <= start or chunk_size <= 0:
            raise ValueError(f"bad range [{start}, {end}) / chunk size {chunk_size}")
        what = f"download of {link.file_url}"
        try:
            async with self._http.stream("GET", link.url, headers={"Range": f"bytes={start}-{end - 1}"}) as resp:
                if _is_html(resp):
                    await resp.aclose()
                    raise LinkExpired(f"{what}: link answered an HTML page (expired or invalid, §5)")
                if resp.status_code in (404, 410):
                    raise NotFound(
                        f"{what}: HTTP {resp.status_code}", http_status=resp.status_code, endpoint="download"
                    )
                if resp.status_code >= 500:
                    raise ServerError(f"{what}: HTTP {resp.status_code}")
                if resp.status_code == 416:
                    return []
                if resp.status_code not in (200, 206):
                    raise BadReply(f"{what}: HTTP {resp.status_code}")
                skip = start if resp.status_code == 200 else 0  # server ignored Range
                want = end - start
                out: list[bytes | None] = []
                parts: list[bytes | memoryview] = []  # the pieces of the chunk being received
                size = min(chunk_size, want)
                fill = got = 0
                async for piece in resp.aiter_bytes():
                    if skip:
                        cut = min(skip, len(piece))
                        piece, skip = piece[cut:], skip - cut
                    src = memoryview(piece)
                    while src and got < want:
                        n = min(len(src), size - fill)
                        parts.append(src[:n])
                        src, fill, got = src[n:], fill + n, got + n
                        if fill == size:
                            chunk = b"".join(parts)  # the one copy; no zero-filled buffer first
                            parts = []
                            if on_chunk is not None:
                                await on_chunk(len(out), chunk)
                                out.append(None)
                            else:
                                out.append(chunk)
                            size, fill = min(chunk_size, want - got), 0
                    if got >= want:
                        break
                if parts:  # a short body: keep what arrived, the caller checks lengths
                    out.append(b"".join(parts))
                return out
        except httpx.TimeoutException as exc:
            raise ServerError(f"{what}: time-out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:  # includes a body shorter than Content-Length
            raise ServerError(f"{what}: connection failed ({type(exc).__name__})") from None

    # ------------------------------------------------------------------ upload
    @endpoint("upload/get_upload_server")
    async def upload_get_upload_server(self) -> UploadServer:
        """``upload/get_upload_server`` (§6.1): a fresh node host and 10-char id; never cache it.

        Sent as GET with the JSON content type, as rclone and the apidoc do (§1 Methods).
        """
        log.debug("api upload/get_upload_server")
        resp = await self._send(
            "upload/get_upload_server",
            "GET",
            f"{self.base_url}/upload/get_upload_server.cgi",
            headers={**self._auth(), "Content-Type": "application/json"},
        )
        data = self._parse("upload/get_upload_server", resp)
        host = str(self._field("upload/get_upload_server", data, "url"))
        uid = str(self._field("upload/get_upload_server", data, "id"))
        if not re.fullmatch(r"[A-Za-z0-9]{1,10}", uid) or not host or "/" in host:
            raise BadReply("upload/get_upload_server: malformed node or id (§6.1)")
        return UploadServer(host=host, id=uid)

    def _node_url(self, server: UploadServer, path: str) -> str:
        return f"{self._scheme}://{server.host}/{path}"

    @endpoint("upload.cgi")
    async def upload_post(self, server: UploadServer, files: Sequence[UploadSource], folder_id: int) -> str:
        """POST ``https://<node>/upload.cgi?id=<id>`` (§6.2): multipart ``file[]`` parts plus ``did``.

        The body is streamed from disk with an exact Content-Length. Success is a 302 to
        ``/end.pl?xid=<id>`` (some nodes answer 200 directly, §6.3). Returns the end.pl URL.

        Raises:
            ValueError: no file, more than 500 (§6 limits), or an empty file (§6: refused).
            UploadFailed: the node answered an HTML page (message included, e.g. "Pas de fichier").
            ServerError: 5xx or a connection failure (the upload may or may not have landed:
                the caller must look for it before uploading again, §8.7).
        """
        if not files or len(files) > 500:
            raise ValueError("an upload takes 1 to 500 files (§6 limits)")
        for f in files:
            if f.size <= 0:
                raise ValueError(f"{f.name!r}: 1fichier refuses empty files (§6 limits)")
        handles: list[IO[bytes]] = []
        try:
            parts: list[tuple[str, tuple[str, IO[bytes], str]]] = []
            for f in files:
                if f.file is not None:
                    f.file.seek(0)
                    parts.append(("file[]", (f.name, f.file, "application/octet-stream")))
                    continue
                fh = open(f.path, "rb")  # noqa: ASYNC230, SIM115 - a local staging file; closed in finally
                handles.append(fh)
                parts.append(("file[]", (f.name, fh, "application/octet-stream")))
            log.debug("upload.cgi: %d file(s), %d bytes", len(files), sum(f.size for f in files))
            resp = await self._send(
                "upload.cgi",
                "POST",
                self._node_url(server, f"upload.cgi?id={server.id}"),
                data={"did": str(int(folder_id))},
                files=parts,
                headers=self._auth(),
            )
        finally:
            for handle in handles:
                handle.close()
        if resp.status_code in (301, 302, 303, 307):
            loc = str(resp.headers.get("location", ""))
            if "end.pl" not in loc:
                raise UploadFailed(f"upload.cgi: redirect to an unexpected place ({urlsplit(loc).path})")
            return urljoin(self._node_url(server, ""), loc)
        if resp.status_code >= 500:
            raise ServerError(f"upload.cgi: HTTP {resp.status_code}")
        if resp.status_code == 200 and not _is_html(resp):
            return self._node_url(server, f"end.pl?xid={server.id}")
        raise UploadFailed(f"upload.cgi: HTTP {resp.status_code}: {_html_text(resp.text)}")

    @endpoint("end.pl")
    async def upload_end(self, server: UploadServer) -> tuple[UploadedFile, ...]:
        """GET ``https://<node>/end.pl?xid=<id>`` with header ``JSON: 1`` (§6.4).

        Returns one :class:`UploadedFile` per uploaded file (``size`` parsed from its string).
        Repeatable for about 2 hours (§6.4), so a failed end.pl is retried, never the POST.

        Raises:
            BadReply: HTML instead of JSON (#4382, #7971; transient).
            UploadFailed: a JSON reply with no ``links`` (#5152).
        """
        resp = await self._send(
            "end.pl", "GET", self._node_url(server, f"end.pl?xid={server.id}"), headers={**self._auth(), "JSON": "1"}
        )
        if resp.status_code >= 500:
            raise ServerError(f"end.pl: HTTP {resp.status_code}")
        try:
            data = resp.json()
        except ValueError:
            what = _html_text(resp.text) if _is_html(resp) else "not JSON"
            raise BadReply(f"end.pl: HTTP {resp.status_code}, {what}") from None
        if not isinstance(data, dict):
            raise BadReply("end.pl: reply is not a JSON object")
        if str(data.get("status", "")).upper() == "KO":
            raise api_error_from_reply(str(data.get("message", "")), http_status=resp.status_code, endpoint="end.pl")
        links = data.get("links") or []
        if not links:
            raise UploadFailed("end.pl: reply has no links (§6.4, rclone #5152)")
        return self._model("end.pl", lambda d: tuple(UploadedFile.from_json(x) for x in links), data)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _model(endpoint: str, build: Callable[[dict[str, Any]], _Model], data: dict[str, Any]) -> _Model:
        try:
            return build(data)
        except FichierError:
            raise
        except (KeyError, ValueError, TypeError) as exc:
            raise BadReply(f"{endpoint}: unexpected reply shape ({type(exc).__name__}: {exc})") from None


# Keep ApiError importable from here for callers that catch by layer.
__all__ += ["ApiError"]
