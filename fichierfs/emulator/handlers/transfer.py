"""Transfers: §2.15/§5 download/get_token and token downloads, §2.16/§6 get_upload_server, upload.cgi, end.pl."""

from __future__ import annotations

import email.utils
import mimetypes
import re
import secrets
from typing import Any
from urllib.parse import quote

import anyio
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..pipeline import Base
from ..rules import ONE_LOCATION, name_error
from ..service import EmulatorService
from ..state import file_id_from_url, store_stream
from ..wire import (
    ALNUM,
    KO,
    client_ip,
    drain,
    html_page,
    int_param,
    json_response,
    not_found,
)


class TransferApi(Base):
    """Download and upload endpoints."""

    # ---- §2.15 download/get_token -------------------------------------------------------------------
    def get_token(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§2.15: ``{"status":"OK","url":"https://a-1.1fichier.com/p<digits>"}`` (our own scheme://host:port
        when called on another host). ``single`` defaults to 0 (§5). Anonymous uploads are public links and
        can be fetched too; the owner needs no ``pass`` ([UNVERIFIED choice]s)."""
        fid = file_id_from_url(body.get("url"))
        rec = self.acct.file(fid) if fid else None
        if rec is None:
            raise not_found()
        if not self.svc.locations.admit(client_ip(request)):  # §3 #887
            self.svc.count("location_refusals")
            raise KO(ONE_LOCATION)
        tok = self.svc.new_token(rec.id, single=bool(int_param(body, "single", 0)),
                                 inline=bool(int_param(body, "inline", 0)))
        return {"status": "OK", "url": self._base(request, "https://a-1.1fichier.com") + tok.path}

    # ---- §2.16 / §6 get_upload_server ---------------------------------------------------------------
    def get_upload_server(self, request: Request, body: dict[str, Any]) -> dict[str, Any]:
        """§6 step 1: ``{"url": node host, "id": 10 random alphanumerics}``, fresh on every call; no status."""
        session = self.svc.new_upload(self._node_host(request))
        return {"url": session.node, "id": session.id}

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
        svc = self.svc
        uid = request.query_params.get("id", "")
        session = svc.upload(uid)
        if "content-length" not in request.headers:
            await drain(request)
            return html_page("<h1>411 Length Required</h1>", 411)
        if session is None or session.done_at is not None:
            await drain(request)  # never answer before the body is in (hypercorn #329, see v1)
            return html_page("Identifiant d'upload invalide / Invalid upload id")
        try:
            form = await request.form(max_files=self.cfg.max_files_per_upload, max_fields=100,
                                      max_part_size=1024 * 1024)
        except HTTPException as exc:  # too many parts (§6 "up to 500 files per upload") or a malformed body
            await drain(request)
            return html_page(f"Erreur d'envoi / Upload refused: {exc.detail}")
        try:
            parts = [p for p in form.getlist("file[]") if isinstance(p, UploadFile)]
            sizes = [int(p.size or 0) for p in parts]
            svc.count("bytes_up", sum(sizes))
            if session.done_at is not None:  # a concurrent POST with the same id won the race
                return html_page("Identifiant d'upload invalide / Invalid upload id")
            if svc.clock() - session.created > self.cfg.max_upload_seconds:  # §6 "at most 4 h"
                svc.drop_upload(uid)
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
            svc.count("refused_files", len(refusals))
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
                if self.acct.used_bytes() + sum(int(p.size or 0) for p in accepted) > svc.quota:
                    svc.count("refused_files", len(accepted))
                    return html_page("Quota d'espace disque atteint / Storage quota exceeded")
            links = []
            now = svc.clock()
            for p in accepted:
                blob = self.acct.new_blob()
                p.file.seek(0)
                if (p.size or 0) > 8 * 1024 * 1024:
                    size, wp = await anyio.to_thread.run_sync(store_stream, p.file, blob)
                else:
                    size, wp = store_stream(p.file, blob)
                if not authed:
                    remove = "".join(secrets.choice(ALNUM) for _ in range(10))
                ctype = mimetypes.guess_type(p.filename or "")[0] or "application/octet-stream"
                rec = self.acct.add_file(folder_id=folder_id, filename=p.filename or "", blob=blob, size=size,
                                         whirlpool_hex=wp, content_type=ctype, remove_code=remove)
                if self.cfg.visibility_delay > 0:
                    svc.hide_until(rec.id, now + self.cfg.visibility_delay)
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
        svc = self.svc
        uid = request.query_params.get("xid", "")
        s = svc.upload(uid)
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
        svc = self.svc
        tok = svc.token(request.url.path)
        head = request.method == "HEAD"
        now = svc.clock()
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
        if not svc.locations.admit(ip):  # §3 "or download made, from a second IP" #887
            svc.count("location_refusals")
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
        rng = parse_range(request.headers.get("range"), size)
        if isinstance(rng, str):  # "unsatisfiable"
            return Response(b"", status_code=416, headers={"Content-Range": f"bytes */{size}",
                                                           "Accept-Ranges": "bytes"})
        if rng is not None:
            start, end = rng
            length = end - start + 1
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        headers["Content-Length"] = str(length)
        return FileBody(svc, self.acct.blob_path(rec), start, length, status, headers, head, ip)


class FileBody:
    """Streams ``length`` bytes of a blob from ``start`` (§5): never loads the file, honours ``bandwidth``
    (bytes/s, sleeping with anyio so MockClock works) and counts ``bytes_down``."""

    def __init__(self, svc: EmulatorService, path: Any, start: int, length: int, status: int,
                 headers: dict[str, str], head: bool, ip: str) -> None:
        self.svc, self.path, self.start, self.length = svc, path, start, length
        self.status, self.headers, self.head, self.ip = status, headers, head, ip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()]
        await send({"type": "http.response.start", "status": self.status, "headers": raw})
        if self.head or self.length == 0:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        self.svc.locations.opened(self.ip)  # an open stream keeps its address the location (§3 #887)
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
            self.svc.locations.closed(self.ip)

    async def _stream(self, send: Send) -> None:
        bw = self.svc.config.bandwidth
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
                self.svc.count("bytes_down", len(data))
                await send({"type": "http.response.body", "body": data, "more_body": left > 0})
        if left > 0:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def parse_range(value: str | None, size: int) -> tuple[int, int] | str | None:
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
