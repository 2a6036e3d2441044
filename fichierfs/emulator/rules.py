"""Rate limits, flood locks and bans (§3, §4, §2.1–§2.3), the one-download-location rule (§3 #887, §5) and
name rules (§7).

All times are seconds of the emulator's monotonic ``clock``; windows and lock durations are multiplied by
``EmulatorConfig.time_scale``.

Who is limited (§3, §4 "Flood detection is per IP … and also per user/key"):

* per client address ("party" ``ip:<addr>``): 3 calls per sliding second, one listing per 3 s, each folder's
  30 s clock, the all-files hour, user/info once a minute. Crossing one answers HTTP 403
  ``Flood detected: IP Locked #412`` and locks that address for every /v1 call.
* per account ("party" ``user:<account>``): the same clocks over the account's calls from every address, with
  user/info once per 5 min. A crossing that only the account's calls from several addresses make answers
  ``Flood detected: User Locked #223`` and locks the account on every address. One address alone always
  crosses its own limit first, so a single host only ever sees #412 (as before hosts were told apart).
* user/info (§2.1, §4 [jd2019]): a crossing answers ``Flood detected: IP Locked #38`` and locks that
  address's user/info (strict: and every other /v1 call but download/get_token) while downloads keep working.
* Each *new* lock is counted in ``stats()["flood_locks"]`` and by kind in ``stats()["locks"]``.
* During a lock every refused call answers the flood error again; in the strict profile it also pushes the
  end of the lock to now + the lock's length ([UNVERIFIED] §4). Repeated offences grow the ban
  (``ban_growth``, ``ban_max_seconds``, ``ban_memory``; config.py).
* Only /v1 calls are limited; token downloads, upload.cgi and end.pl are not (§2.1 "downloads through the API
  keep working", §4). A refused call does not count as a listing / user/info call.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .config import EmulatorConfig

__all__ = ["FLOOD_IP", "FLOOD_USER", "FLOOD_USER_INFO", "FORBIDDEN_CHARS", "Limiter", "Locations", "ONE_LOCATION",
           "name_error"]

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


FLOOD_IP = "Flood detected: IP Locked #412"  # §3 (current code since 2024)
FLOOD_USER = "Flood detected: User Locked #223"  # §3, pyload #4371
FLOOD_USER_INFO = "Flood detected: IP Locked #38"  # §2.1, §3 [jd2019]: user/info called too often
ONE_LOCATION = "Only 1 location allowed at a time #887"  # §3, §5


@dataclass
class _Lock:
    until: float = -math.inf
    length: float = 0.0
    offences: int = 0  # locks in a row, each within ban_memory of the previous one's end


@dataclass
class _Party:
    """The limit history of one client address or one account."""

    calls: deque[float] = field(default_factory=deque)
    last_listing: dict[str, float] = field(default_factory=dict)  # "" (shared clocks) or the endpoint
    last_folder: dict[tuple[str, int], float] = field(default_factory=dict)
    last_all_files: float = -math.inf
    last_user_info: float = -math.inf
    lock: _Lock = field(default_factory=_Lock)
    info_lock: _Lock = field(default_factory=_Lock)


class Limiter:
    """The §4 limits and locks per client address and per account (module docstring)."""

    def __init__(self, config: EmulatorConfig, clock: Callable[[], float],
                 on_new_lock: Callable[[str], None]) -> None:
        self.config = config
        self.clock = clock
        self._on_new_lock = on_new_lock
        self.reset()

    def reset(self) -> None:
        """Forget every window, lift every lock and forget past offences."""
        self._global = _Lock()  # lock_for(): every address
        self._ips: dict[str, _Party] = {}
        self._users: dict[str, _Party] = {}

    def _ip(self, ip: str) -> _Party:
        return self._ips.setdefault(ip, _Party())

    def _user(self, user: str) -> _Party:
        return self._users.setdefault(user, _Party())

    # -- locks -----------------------------------------------------------------------------------------
    def _locked(self, lock: _Lock, now: float) -> bool:
        if now < lock.until:
            if self.config.extend_lock:
                lock.until = max(lock.until, now + lock.length)
            return True
        return False

    def _lock(self, lock: _Lock, kind: str, seconds: float | None = None) -> None:
        """Start (or push back) ``lock``: ``seconds`` as given, else the grown ban length."""
        c, now = self.config, self.clock()
        if seconds is None:
            if now - lock.until > c.scaled(c.ban_memory):
                lock.offences = 0
            lock.offences += 1
            seconds = min(c.scaled(c.ban_max_seconds),
                          c.scaled(c.flood_lock_seconds) * c.ban_growth ** (lock.offences - 1))
        if now >= lock.until:
            self._on_new_lock(kind)
        lock.until = max(lock.until, now + seconds)
        lock.length = seconds

    def lock_for(self, seconds: float) -> None:
        """Lock every address for ``seconds`` (not scaled; counts a new lock unless one is active). Calls
        during it extend it by ``flood_lock_seconds`` (scaled) in the strict profile."""
        self._lock(self._global, "ip", seconds)
        self._global.length = self.config.scaled(self.config.flood_lock_seconds)

    def flood(self, ip: str) -> str:
        """A new (grown) #412 lock of ``ip`` (the "flood" fault); returns the message."""
        self._lock(self._ip(ip).lock, "ip")
        return FLOOD_IP

    def lock_remaining(self, ip: str, user: str | None = None) -> float:
        """Seconds until every lock that refuses ``ip``'s (and ``user``'s) API calls has ended (0 = none)."""
        now = self.clock()
        ends = [self._global.until, self._ip(ip).lock.until, self._ip(ip).info_lock.until]
        if user is not None:
            ends.append(self._user(user).lock.until)
        return max(0.0, max(ends) - now)

    # -- the pipeline's three checks ---------------------------------------------------------------------
    def before_auth(self, ip: str, endpoint: str) -> str | None:
        """Locks that refuse ``ip`` whatever the key, then its 3/s window. A refusal message or None."""
        now = self.clock()
        p = self._ip(ip)
        if self._locked(self._global, now) or self._locked(p.lock, now):
            return FLOOD_IP
        if endpoint == "user/info" or (self.config.user_info_lock_blocks_api and endpoint != "download/get_token"):
            if self._locked(p.info_lock, now):
                return FLOOD_USER_INFO
        if self.config.limits and not self._admit_rate(p.calls, self.config.rate_per_second, now):
            self._lock(p.lock, "ip")
            return FLOOD_IP
        return None

    def after_auth(self, user: str, endpoint: str) -> str | None:
        """The account's lock, then its rate over every address. A refusal message or None."""
        now = self.clock()
        u = self._user(user)
        if self._locked(u.lock, now):
            return FLOOD_USER
        if self.config.limits and not self._admit_rate(u.calls, self.config.user_rate_per_second, now):
            self._lock(u.lock, "user")
            return FLOOD_USER
        return None

    def admit_endpoint(self, ip: str, user: str | None, endpoint: str, folder_id: int | None) -> str | None:
        """Per-endpoint limits: listings (§2.2, §2.3, §4) and user/info (§2.1). A refusal message or None."""
        if not self.config.limits:
            return None
        c = self.config
        now = self.clock()
        p = self._ip(ip)
        u = self._user(user) if user is not None else None
        if endpoint == "user/info":
            if (now - p.last_user_info < c.scaled(c.user_info_ip_interval)
                    or (u is not None and now - u.last_user_info < c.scaled(c.user_info_interval))):
                self._lock(p.info_lock, "user_info")
                return FLOOD_USER_INFO
            p.last_user_info = now
            if u is not None:
                u.last_user_info = now
            return None
        if endpoint not in ("folder/ls", "file/ls"):
            return None
        folder = 0 if folder_id is None else folder_id
        clock = "" if c.shared_listing_clocks else endpoint
        if self._listing_crosses(p, clock, endpoint, folder, c.listing_interval, now):
            self._lock(p.lock, "ip")
            return FLOOD_IP
        if u is not None and self._listing_crosses(u, clock, endpoint, folder, c.user_listing_interval, now):
            self._lock(u.lock, "user")
            return FLOOD_USER
        for party in (p, u):
            if party is not None:
                party.last_listing[clock] = now
                party.last_folder[(clock, folder)] = now
                if endpoint == "file/ls" and folder == -1:
                    party.last_all_files = now
        return None

    def _listing_crosses(self, party: _Party, clock: str, endpoint: str, folder: int, gap: float,
                         now: float) -> bool:
        c = self.config
        if endpoint == "file/ls" and folder == -1 and now - party.last_all_files < c.scaled(c.all_files_interval):
            return True
        if now - party.last_folder.get((clock, folder), -math.inf) < c.scaled(c.folder_list_interval):
            return True
        return gap > 0 and now - party.last_listing.get(clock, -math.inf) < c.scaled(gap)

    def _admit_rate(self, calls: deque[float], rate: float, now: float) -> bool:
        """§4 "3 requests per second" as a sliding window of ``time_scale`` seconds: the (N+1)th call inside
        any window (N = floor(rate)) floods. ``rate`` ≤ 0: no limit."""
        if rate <= 0:
            return True
        window = self.config.scaled(1.0)
        while calls and calls[0] <= now - window:
            calls.popleft()
        if len(calls) >= max(1, math.floor(rate)):
            return False
        calls.append(now)
        return True


class Locations:
    """§3 "Only 1 location allowed at a time #887": the account downloads from one client address at a time.

    The location is the address of the latest download activity (a get_token call or a token GET); another
    address is refused while a download stream of the location is open or until ``location_window`` (scaled)
    after its last activity."""

    def __init__(self, config: EmulatorConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        self._where: str | None = None
        self._until = -math.inf
        self._open: dict[str, int] = {}

    def admit(self, ip: str) -> bool:
        """True if ``ip`` may download now (it then becomes the location)."""
        if not self.config.one_location:
            return True
        now = self.clock()
        busy = self._where is not None and self._where != ip and (
            self._open.get(self._where, 0) > 0 or now < self._until)
        if busy:
            return False
        self._where = ip
        self._until = now + self.config.scaled(self.config.location_window)
        return True

    def opened(self, ip: str) -> None:
        self._open[ip] = self._open.get(ip, 0) + 1

    def closed(self, ip: str) -> None:
        self._open[ip] = max(0, self._open.get(ip, 0) - 1)
        if ip == self._where:
            self._until = max(self._until, self.clock() + self.config.scaled(self.config.location_window))
