"""Rate limits, flood locks (§4, §2.1–§2.3) and name rules (§7).

All times are seconds of the emulator's monotonic ``clock``; windows and lock durations are multiplied by
``EmulatorConfig.time_scale``.

Flood model (§3 "Flood detected: IP Locked #412", §4):

* Crossing any limit answers HTTP 403 ``{"status":"KO","message":"Flood detected: IP Locked #412"}`` and starts
  a lock of ``flood_lock_seconds``. Each *new* lock is counted in ``stats()["flood_locks"]``.
* While locked, every /v1 call answers the flood error again and pushes the end of the lock to
  ``now + flood_lock_seconds`` ([UNVERIFIED choice]: the doc gives no ban duration; the brief asks for this).
* Only /v1 calls are limited; token downloads, upload.cgi and end.pl are not (§2.1 "downloads through the API
  keep working", §4).
* A refused call does not count as a listing / user/info call (so it does not move those windows).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

from .config import EmulatorConfig

__all__ = ["Limiter", "name_error", "FORBIDDEN_CHARS"]

#: §7 "Characters the server rejects or mangles": backslash < > " ' $ ` / and U+00B4 (reported), plus a
#: leading space. [UNVERIFIED choice] the emulator *rejects* them (never mangles) and also rejects ASCII
#: control characters and DEL, so that a client that forgets to encode is caught.
FORBIDDEN_CHARS = frozenset('\\<>"\'$`/\u00b4') | frozenset(chr(c) for c in range(32)) | {"\x7f"}


def name_error(name: object, max_len: int) -> str | None:
    """Why ``name`` is not a valid 1fichier file/folder name, or None (§7 "Names", §2.11 250 chars).

    Length counts Unicode characters ([UNVERIFIED choice]: chars, not bytes). Names are case-sensitive;
    a trailing space is allowed ([UNVERIFIED choice]: §7 only lists a *leading* space).
    """
    if not isinstance(name, str) or name == "":
        return "empty name"
    if len(name) > max_len:
        return "name too long"
    if name.startswith(" "):
        return "leading space"
    bad = sorted({c for c in name if c in FORBIDDEN_CHARS})
    if bad:
        return "forbidden character " + " ".join(repr(c) for c in bad)
    return None


class Limiter:
    """Counters for the §4 limits, keyed by the monotonic ``clock`` (seconds)."""

    def __init__(self, config: EmulatorConfig, clock: Callable[[], float], on_new_lock: Callable[[], None]) -> None:
        self.config = config
        self.clock = clock
        self._on_new_lock = on_new_lock
        self.reset()

    def reset(self) -> None:
        """Forget every window and lift any lock."""
        self.locked_until: float = -math.inf
        self._calls: deque[float] = deque()
        self._last_listing: float = -math.inf
        self._last_folder: dict[int, float] = {}
        self._last_all_files: float = -math.inf
        self._last_user_info: float = -math.inf

    # -- locks -----------------------------------------------------------------------------------------
    def is_locked(self) -> bool:
        """True while a lock is active; a call during the lock extends it (module docstring)."""
        now = self.clock()
        if now < self.locked_until:
            self.locked_until = now + self.config.scaled(self.config.flood_lock_seconds)
            return True
        return False

    def lock_for(self, seconds: float) -> None:
        """Start (or push back) a lock ending ``seconds`` from now. Counts a new lock unless one is active."""
        now = self.clock()
        if now >= self.locked_until:
            self._on_new_lock()
        self.locked_until = max(self.locked_until, now + seconds)

    def _flood(self) -> bool:
        self.lock_for(self.config.scaled(self.config.flood_lock_seconds))
        return False

    # -- limits ----------------------------------------------------------------------------------------
    def admit_call(self) -> bool:
        """§4 "3 requests per second" over all /v1 calls, as a sliding window of ``time_scale`` seconds.

        The (N+1)th call inside any window (N = floor(rate_per_second)) floods.
        """
        if not self.config.limits:
            return True
        now = self.clock()
        window = self.config.scaled(1.0)
        while self._calls and self._calls[0] <= now - window:
            self._calls.popleft()
        if len(self._calls) >= max(1, math.floor(self.config.rate_per_second)):
            return self._flood()
        self._calls.append(now)
        return True

    def admit_endpoint(self, endpoint: str, folder_id: int | None) -> bool:
        """Per-endpoint limits: listings (§2.2, §2.3, §4) and user/info (§2.1)."""
        if not self.config.limits:
            return True
        c = self.config
        now = self.clock()
        if endpoint == "user/info":
            if now - self._last_user_info < c.scaled(c.user_info_interval):
                return self._flood()
            self._last_user_info = now
            return True
        if endpoint not in ("folder/ls", "file/ls"):
            return True
        key = 0 if folder_id is None else folder_id
        if endpoint == "file/ls" and key == -1 and now - self._last_all_files < c.scaled(c.all_files_interval):
            return self._flood()
        if now - self._last_folder.get(key, -math.inf) < c.scaled(c.folder_list_interval):
            return self._flood()
        if now - self._last_listing < c.scaled(c.listing_interval):
            return self._flood()
        self._last_listing = now
        self._last_folder[key] = now
        if endpoint == "file/ls" and key == -1:
            self._last_all_files = now
        return True
