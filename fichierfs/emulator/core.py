"""``Emulator``: the service (``service.py``) plus its ASGI app, an in-process transport and out-of-band
helpers ("another client / the web UI": no limits, not counted).

Imports run one way: core → app → handlers → pipeline → service → state/rules/faults/config.
"""

from __future__ import annotations

import io
import math
import mimetypes
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx

from .app import FAULT_HEADER, INPROCESS_KEY, build_app
from .config import EmulatorConfig
from .rules import name_error
from .service import EmulatorService
from .state import file_id_from_url, paris_date, store_stream

__all__ = ["Emulator"]


class Emulator(EmulatorService):
    """A local, faithful 1fichier (see docs/1fichier-api.md).

    ``Emulator(state_dir, config=EmulatorConfig(), clock=None, wall=None)``; ``emu.app`` is the ASGI app and
    ``emu.transport(client_ip=…)`` an in-process ``httpx.AsyncBaseTransport`` (any Host routes to the same
    app). The service's methods (stats, inject, lock_for, reset_limits, set_quota…) are in ``service.py``.
    """

    def __init__(self, state_dir: Path, config: EmulatorConfig = EmulatorConfig(),
                 clock: Callable[[], float] | None = None, wall: Callable[[], float] | None = None) -> None:
        super().__init__(state_dir, config, clock, wall)
        self.app = build_app(self)

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def transport(self, client_ip: str = "127.0.0.1") -> httpx.AsyncBaseTransport:
        """In-process transport whose requests come from ``client_ip`` (the per-IP rules and the one-location
        rule key on it, §3/§4: two transports with two addresses are two hosts). Fault "reset" →
        ``httpx.ReadError``; "truncate" → the partial body, then ``httpx.RemoteProtocolError`` while reading
        (like a server closing before Content-Length)."""
        return _EmulatorTransport(self.app, client_ip)

    # -- out-of-band helpers ("another client / the web UI"): no limits, not counted ----------------------
    def make_folder(self, parent_id: int, name: str) -> int:
        if name_error(name, self.config.max_name):
            raise ValueError(f"invalid folder name {name!r}: {name_error(name, self.config.max_name)}")
        if self.account.folder(parent_id) is None:
            raise ValueError(f"no folder {parent_id}")
        existing = self.account.subfolder_named(parent_id, name)
        if existing is not None:
            raise ValueError(f"folder {name!r} already exists in {parent_id}")
        return self.account.make_folder(parent_id, name)

    def put_file(self, folder_id: int, name: str, data: bytes, date: float | None = None) -> str:
        """Store a file (visible at once) and return its URL. Empty data is refused like an upload (§6).

        ``date``: its upload time (wall-clock epoch seconds; default: now, spaced as uploads are, see
        ``EmulatorConfig.upload_date_spacing``)."""
        if name_error(name, self.config.max_name):
            raise ValueError(f"invalid file name {name!r}: {name_error(name, self.config.max_name)}")
        if not data:
            raise ValueError("1fichier cannot hold empty files (§6, §8.8)")
        if self.account.folder(folder_id) is None:
            raise ValueError(f"no folder {folder_id}")
        return self._store(folder_id, name, io.BytesIO(data), date)

    def _store(self, folder_id: int, name: str, src: Any, date: float | None = None) -> str:
        blob = self.account.new_blob()
        size, wp = store_stream(src, blob)
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        rec = self.account.add_file(folder_id=folder_id, filename=name, blob=blob, size=size, whirlpool_hex=wp,
                                    content_type=ctype, upload_time=date)
        return rec.url

    def remove_file(self, url: str) -> None:
        fid = file_id_from_url(url)
        if not fid or self.account.file(fid) is None:
            raise KeyError(url)
        self.account.delete_file(fid)
        self.forget_file(fid)

    def list_files(self, folder_id: int) -> list[dict[str, Any]]:
        """Every file of a folder (``-1`` = whole account), invisible ones included, in upload order. Keys:
        url, id, filename, size, whirlpool, date, folder_id, content_type, description, path (blob on disk)."""
        return [
            {"url": r.url, "id": r.id, "filename": r.filename, "size": r.size, "whirlpool": r.whirlpool,
             "date": paris_date(r.upload_time), "folder_id": r.folder_id, "content_type": r.content_type,
             "description": r.description, "path": self.account.blob_path(r)}
            for r in self.account.files_in(folder_id)
        ]

    def list_folders(self, parent_id: int) -> list[dict[str, Any]]:
        return [{"id": f.id, "name": f.name, "parent": f.parent} for f in self.account.subfolders(parent_id)]

    def read_file(self, url: str) -> bytes:
        fid = file_id_from_url(url)
        rec = self.account.file(fid) if fid else None
        if rec is None:
            raise KeyError(url)
        return self.account.blob_path(rec).read_bytes()

    def seed(self, src: Path, folder_id: int = 0) -> None:
        """Import a local tree: directories → folders (reused if the name exists), regular files → files.
        Empty files are skipped (1fichier cannot hold them, §6); so are names 1fichier refuses (§7).

        Upload dates (§2.3, §7): each file is dated by its own modification time, as if it had been
        uploaded when it was last changed, so a mount shows a seeded photo folder with its real dates.
        Dates stay distinct whole seconds (also from the account's other files), never in the future: a
        file whose second is taken, or that is newer than now, moves back to the nearest free second
        before it (files of one second, such as a tree written by a test, spread over the seconds before
        it), so ``file/ls`` ``sent_before``/``sent_after`` windows can split any folder (§2.3)."""
        todo: list[tuple[int, Path]] = []
        self._seed_walk(Path(src), folder_id, todo)
        wanted = sorted((math.floor(min(p.stat().st_mtime, self.wall() - 1)), i) for i, (_, p) in enumerate(todo))
        taken = {math.floor(r.upload_time) for r in self.account.iter_all_files()}
        dates = [0] * len(todo)
        ceiling = math.inf
        for want, i in reversed(wanted):  # newest first: each takes the free second nearest below what it wants
            t = int(min(want, ceiling))
            while t in taken:
                t -= 1
            taken.add(t)
            dates[i] = t
            ceiling = t - 1
        for (fid, path), t in zip(todo, dates, strict=True):
            with open(path, "rb") as f:
                self._store(fid, path.name, f, float(t))

    def _seed_walk(self, src: Path, folder_id: int, todo: list[tuple[int, Path]]) -> None:
        for entry in sorted(src.iterdir(), key=lambda p: p.name):
            if name_error(entry.name, self.config.max_name):
                continue
            if entry.is_dir():
                sub = self.account.subfolder_named(folder_id, entry.name)
                fid = sub.id if sub is not None else self.account.make_folder(folder_id, entry.name)
                self._seed_walk(entry, fid, todo)
            elif entry.is_file() and entry.stat().st_size > 0:
                todo.append((folder_id, entry))


class _TruncatedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk
        raise httpx.RemoteProtocolError(
            "peer closed connection without sending complete message body (incomplete chunked read)")

    async def aclose(self) -> None:
        await self._inner.aclose()


class _EmulatorTransport(httpx.AsyncBaseTransport):
    """``httpx.ASGITransport`` plus the translation of the "reset"/"truncate" faults into transport errors.

    Note: ``httpx.ASGITransport`` buffers each response body in memory; use ranges (or the real server) for
    very large downloads."""

    def __init__(self, app: Any, client_ip: str = "127.0.0.1") -> None:
        async def inprocess_app(scope: Any, receive: Any, send: Any) -> None:
            await app({**scope, INPROCESS_KEY: True}, receive, send)

        self._inner = httpx.ASGITransport(app=inprocess_app, client=(client_ip, 123))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        resp = await self._inner.handle_async_request(request)
        fault = resp.headers.get(FAULT_HEADER)
        if fault is None:
            return resp
        if fault == "reset":
            await resp.aclose()
            raise httpx.ReadError("[Errno 104] Connection reset by peer", request=request)
        headers = [(k, v) for k, v in resp.headers.raw if k.lower() != FAULT_HEADER.encode()]
        assert isinstance(resp.stream, httpx.AsyncByteStream)
        return httpx.Response(resp.status_code, headers=headers, stream=_TruncatedStream(resp.stream),
                              extensions=resp.extensions, request=request)

    async def aclose(self) -> None:
        await self._inner.aclose()
