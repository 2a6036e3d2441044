"""``Emulator``: the account, its limits, faults, tokens and upload sessions, plus the ASGI app.

Clocks: ``clock`` (monotonic seconds; default ``time.monotonic``) drives every limit, lock, token validity and
visibility delay; dates shown to clients come from the wall clock (``time.time``), rendered in Europe/Paris
(§7 "Timestamps"). Persisted: folders, files, account options (``state.py``). Kept in memory only (lost on
restart, [UNVERIFIED choice]): limit windows and locks, faults, stats, download tokens, upload sessions,
remote jobs and pending visibility delays (after a restart every file is visible).
"""

from __future__ import annotations

import math
import mimetypes
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from .app import FAULT_HEADER, INPROCESS_KEY, Token, UploadSession, build_app, file_id_from_url
from .config import ENDPOINTS, EmulatorConfig
from .faults import FaultPlan
from .rules import Limiter, Locations, name_error
from .state import Account, paris_date, store_stream

__all__ = ["Emulator"]


class Emulator:
    """A local, faithful 1fichier (see /work/shared/1fichier-api.md).

    ``Emulator(state_dir, config=EmulatorConfig(), clock=None)``; ``emu.app`` is the ASGI app and
    ``emu.transport()`` an in-process ``httpx.AsyncBaseTransport`` (any Host routes to the same app).
    """

    def __init__(self, state_dir: Path, config: EmulatorConfig = EmulatorConfig(),
                 clock: Callable[[], float] | None = None, wall: Callable[[], float] | None = None) -> None:
        self.config = config
        self.clock: Callable[[], float] = clock if clock is not None else time.monotonic
        self.wall: Callable[[], float] = wall if wall is not None else time.time
        self.state_dir = Path(state_dir)
        self.account = Account(self.state_dir, self.wall, config.upload_date_spacing)
        self.faults = FaultPlan()
        #: the account's capacity in bytes (§2.1); starts at ``config.quota``, changed by ``set_quota``
        self.quota: int = config.quota
        self._stats: dict[str, Any] = {}
        self.reset_stats()
        self.limiter = Limiter(config, self.clock, self._count_lock)
        self.locations = Locations(config, self.clock)
        self._tokens: dict[str, Token] = {}
        self._uploads: dict[str, UploadSession] = {}
        self._visible_at: dict[str, float] = {}
        self._remote: dict[int, dict[str, Any]] = {}
        self.app = build_app(self)

    # -- plumbing -------------------------------------------------------------------------------------
    def _count_lock(self, kind: str) -> None:
        self._stats["flood_locks"] += 1
        self._stats["locks"][kind] += 1

    def close(self) -> None:
        """Close the sqlite connection (optional; a new Emulator may reopen the same state_dir)."""
        self.account.close()

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

    # -- stats ----------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """``{"calls": {endpoint: n}, "flood_locks": n, "bytes_down": n, "bytes_up": n, "refused_files": n}``;
        every endpoint of ``config.ENDPOINTS`` is present. bytes_down counts file bytes served by token
        downloads; bytes_up the file-part bytes received by upload.cgi; refused_files the ``file[]`` parts
        upload.cgi refused (per-file refusals and whole-POST quota refusals)."""
        s = self._stats
        return {"calls": dict(s["calls"]), "flood_locks": s["flood_locks"], "bytes_down": s["bytes_down"],
                "bytes_up": s["bytes_up"], "refused_files": s["refused_files"], "locks": dict(s["locks"]),
                "location_refusals": s["location_refusals"]}

    def reset_stats(self) -> None:
        self._stats = {"calls": {e: 0 for e in ENDPOINTS}, "flood_locks": 0, "bytes_down": 0, "bytes_up": 0,
                       "refused_files": 0, "locks": {"ip": 0, "user": 0, "user_info": 0},
                       "location_refusals": 0}

    # -- account -------------------------------------------------------------------------------------
    def set_quota(self, quota: int) -> None:
        """Change the account's capacity (bytes) at run time (§2.1); uploads beyond it are refused (§6)."""
        if quota < 0:
            raise ValueError("quota must be >= 0")
        self.quota = int(quota)

    def used_bytes(self) -> int:
        """Bytes stored in the account (every account file, seeded ones included; user/info, §2.1)."""
        return self.account.used_bytes()

    # -- faults and limits ----------------------------------------------------------------------------
    def inject(self, endpoint: str, kind: str, nth: int = 1, count: int = 1) -> None:
        """Fail the ``nth`` next call of ``endpoint`` and the ``count - 1`` after it (see ``faults.py``)."""
        self.faults.inject(endpoint, kind, nth, count)

    def lock_for(self, seconds: float) -> None:
        """Force a flood lock ending ``seconds`` (not scaled) from now; works even with ``limits=False``."""
        self.limiter.lock_for(seconds)

    def reset_limits(self) -> None:
        """Lift every lock, forget every limit window, past offences and the download location (tests;
        ``POST /_emulator/unlock``)."""
        self.limiter.reset()
        self.locations.reset()

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
        import io

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
        self._visible_at.pop(fid, None)

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

        Upload dates (§2.3, §7): the files get distinct whole-second dates in the past, in import order, 1 to
        90 s apart (a deterministic pseudo-random gap), the newest a little before now, so a real-looking
        history that ``file/ls`` ``sent_before``/``sent_after`` windows can split (§2.3)."""
        todo: list[tuple[int, Path]] = []
        self._seed_walk(Path(src), folder_id, todo)
        rng = random.Random(len(todo))
        gaps = [rng.randint(1, 90) for _ in todo]
        t = math.floor(min(self.wall(), self.account.oldest_date() or math.inf)) - 1 - sum(gaps)
        for (fid, path), gap in zip(todo, gaps, strict=True):
            t += gap
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

    async def __aiter__(self):  # type: ignore[override]
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
