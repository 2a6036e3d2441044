"""``EmulatorService``: the emulator's state and the operations the handlers need (no handler reaches into
private fields). ``core.Emulator`` adds the ASGI app, the in-process transport and the out-of-band helpers.

Clocks: ``clock`` (monotonic seconds; default ``time.monotonic``) drives every limit, lock, token validity and
visibility delay; dates shown to clients come from the wall clock (``time.time``), rendered in Europe/Paris
(§7 "Timestamps"). Persisted: folders, files, account options (``state.py``). Kept in memory only (lost on
restart, [UNVERIFIED choice]): limit windows and locks, faults, stats, the quota set at run time, download
tokens, upload sessions, remote jobs and pending visibility delays (after a restart every file is visible).
"""

from __future__ import annotations

import math
import secrets
import string
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import ENDPOINTS, EmulatorConfig
from .faults import FaultPlan
from .rules import Limiter, Locations
from .state import Account, FileRec, Token, UploadSession, paris_date

__all__ = ["EmulatorService"]

_ALNUM = string.ascii_letters + string.digits


class EmulatorService:
    """The account (``account``), its limits (``limiter``, ``locations``), faults, stats, quota, download
    tokens, upload sessions, visibility delays and remote jobs."""

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

    def close(self) -> None:
        """Close the sqlite connection (optional; a new Emulator may reopen the same state_dir)."""
        self.account.close()

    # -- stats ----------------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """``{"calls": {endpoint: n}, "flood_locks": n, "locks": {"ip", "user", "user_info": n},
        "bytes_down": n, "bytes_up": n, "refused_files": n, "location_refusals": n, "clients": {ip: n}}``;
        every endpoint of
        ``config.ENDPOINTS`` is present. flood_locks counts every new lock (all kinds); bytes_down the file
        bytes served by token downloads; bytes_up the file-part bytes received by upload.cgi; refused_files
        the ``file[]`` parts upload.cgi refused (per-file refusals and whole-POST quota refusals);
        location_refusals the #887 refusals (§3); clients ``{address: calls}`` (every named endpoint) per
        client address."""
        s = self._stats
        return {"calls": dict(s["calls"]), "flood_locks": s["flood_locks"], "bytes_down": s["bytes_down"],
                "bytes_up": s["bytes_up"], "refused_files": s["refused_files"], "locks": dict(s["locks"]),
                "location_refusals": s["location_refusals"], "clients": dict(s["clients"])}

    def reset_stats(self) -> None:
        self._stats = {"calls": {e: 0 for e in ENDPOINTS}, "flood_locks": 0, "bytes_down": 0, "bytes_up": 0,
                       "refused_files": 0, "locks": {"ip": 0, "user": 0, "user_info": 0},
                       "location_refusals": 0, "clients": {}}

    def count_call(self, endpoint: str, ip: str = "127.0.0.1") -> None:
        self._stats["calls"][endpoint] += 1
        self._stats["clients"][ip] = self._stats["clients"].get(ip, 0) + 1

    def count(self, counter: str, n: int = 1) -> None:
        """Add ``n`` to one of ``bytes_down``, ``bytes_up``, ``refused_files``, ``location_refusals``."""
        assert counter in ("bytes_down", "bytes_up", "refused_files", "location_refusals"), counter
        self._stats[counter] += n

    def _count_lock(self, kind: str) -> None:
        self._stats["flood_locks"] += 1
        self._stats["locks"][kind] += 1

    # -- faults and limits ----------------------------------------------------------------------------
    def inject(self, endpoint: str, kind: str, nth: int = 1, count: int = 1) -> None:
        """Fail the ``nth`` next call of ``endpoint`` and the ``count - 1`` after it (see ``faults.py``)."""
        self.faults.inject(endpoint, kind, nth, count)

    def lock_for(self, seconds: float) -> None:
        """Force a flood lock of every address ending ``seconds`` (not scaled) from now; works even with
        ``limits=False``."""
        self.limiter.lock_for(seconds)

    def reset_limits(self) -> None:
        """Lift every lock, forget every limit window, past offences and the download location (tests;
        ``POST /_emulator/unlock``)."""
        self.limiter.reset()
        self.locations.reset()

    # -- account --------------------------------------------------------------------------------------
    def set_quota(self, quota: int) -> None:
        """Change the account's capacity (bytes) at run time (§2.1); uploads beyond it are refused (§6)."""
        if quota < 0:
            raise ValueError("quota must be >= 0")
        self.quota = int(quota)

    def used_bytes(self) -> int:
        """Bytes stored in the account (every account file, seeded ones included; user/info, §2.1)."""
        return self.account.used_bytes()

    # -- visibility (§6 "Visibility", §8.6) -------------------------------------------------------------
    def hide_until(self, file_id: str, t: float) -> None:
        """Keep a new file out of listings until ``clock() >= t``."""
        self._visible_at[file_id] = t

    def visible(self, rec: FileRec) -> bool:
        return self._visible_at.get(rec.id, -math.inf) <= self.clock()

    def forget_file(self, file_id: str) -> None:
        """Drop what is kept in memory about a deleted file."""
        self._visible_at.pop(file_id, None)

    # -- download tokens (§5) -------------------------------------------------------------------------
    def new_token(self, file_id: str, *, single: bool, inline: bool) -> Token:
        """A fresh direct link path ``/p<10 digits>`` for ``file_id``."""
        while True:
            path = "/p" + str(secrets.randbelow(9 * 10**9) + 10**9)
            if path not in self._tokens:
                break
        tok = Token(path, file_id, self.clock(), single, inline)
        self._tokens[path] = tok
        return tok

    def token(self, path: str) -> Token | None:
        return self._tokens.get(path)

    # -- upload sessions (§6) -------------------------------------------------------------------------
    def new_upload(self, node: str) -> UploadSession:
        """A fresh ``get_upload_server`` id (10 random alphanumerics, §6 step 1) on ``node``."""
        while True:
            uid = "".join(secrets.choice(_ALNUM) for _ in range(10))
            if uid not in self._uploads:
                break
        s = UploadSession(uid, node, self.clock())
        self._uploads[uid] = s
        return s

    def upload(self, uid: str) -> UploadSession | None:
        """The session of ``uid``; a finished one is forgotten ``upload_result_ttl`` after its POST (§6
        "kept for 2 h")."""
        s = self._uploads.get(uid)
        if s is not None and s.done_at is not None and self.clock() - s.done_at > self.config.upload_result_ttl:
            self.drop_upload(uid)
            return None
        return s

    def drop_upload(self, uid: str) -> None:
        self._uploads.pop(uid, None)

    # -- remote jobs (§2.17) ----------------------------------------------------------------------------
    def add_remote_job(self, urls: list[Any], headers: dict[str, Any]) -> dict[str, Any]:
        jid = len(self._remote) + 1
        job = {"id": jid, "request_date": paris_date(self.wall()), "execution_date": "", "urls": urls,
               "headers": headers}
        self._remote[jid] = job
        return job

    def remote_jobs(self) -> list[dict[str, Any]]:
        return list(self._remote.values())

    def remote_job(self, jid: int) -> dict[str, Any] | None:
        return self._remote.get(jid)
