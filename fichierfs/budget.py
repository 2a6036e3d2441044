"""The API budget shared by every mount of an account: on one host (built in) or across hosts (Redis).

1fichier counts requests per IP and per user (§3 "IP Locked" / "User Locked #223", §4). Each
:class:`~fichierfs.scheduler.Scheduler` paces its own calls; a :class:`SharedBudget` adds the
calls of the *other* mounts. Before a metered call starts, the scheduler asks
:meth:`SharedBudget.acquire`; the backend checks and charges the shared clocks in one atomic
step and answers 0 (go) or how many seconds to wait. After the call :meth:`~SharedBudget.release`
moves the clocks to its end (or gives them back if it never reached 1fichier). A flood lock
seen by any mount opens the shared breaker (:meth:`~SharedBudget.trip`): every mount waits.

The clocks (wall-clock seconds, never a process's own clock):

* ``start`` — last metered call (``min_interval``); ``listing`` — last listing
  (``listing_interval``); ``folder:<id>`` — last listing of that folder
  (``same_folder_interval``); ``all_files`` (``all_files_interval``); ``user_info_ip``
  (``user_info_ip_interval``: 1 per minute per IP, §2.1) and ``user_info:<account>``
  (``user_info_interval``: 1 per 5 min per user) — a key whose account is not known yet
  (``fichierfs.account.identify``) charges ``user_info:*`` and waits for every account's clock
  (a wrong guess is an IP lock #38), and every account's call waits for ``user_info:*``; a key
  1fichier refuses (AuthError) gets its per-user charge back (:meth:`SharedBudget.release`
  ``refused``), so a mistyped key costs the right one at most the per-IP minute;
  ``breaker_until`` / ``breaker_n`` — shared flood breaker.

Backends (all behind the one :class:`SharedBudget` protocol):

* :class:`MemoryBudget` — this process only. The ``--coordinator none`` mode (today's
  behaviour, kept for the benchmark) and the fallback of :class:`RedisBudget`.
* :class:`HostBudget` — SQLite in WAL mode (``BEGIN IMMEDIATE`` = a file lock) in a host-wide
  file under the user's cache root, independent of ``--cache-dir`` and of the key. One
  namespace per API URL: 1fichier's flood limits are per IP, and every mount on this host
  shares the IP whatever its account. Also holds the budget history across restarts.
* :class:`RedisBudget` — the same clocks as atomic server-side Lua scripts on Redis/Valkey
  (``--coordinator redis://HOST:PORT/DB``), namespaced by API URL + account fingerprint, with
  server time (``TIME``) so hosts need no synchronised clocks; plus a fair, expiring download
  lease (§3 #887). When Redis cannot be reached it falls back to a conservative local budget
  (every interval × 4 and every folder treated as just listed), says so in :meth:`status` and
  the log, and rejoins on its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import trio

from fichierfs.models import FileUrl, FolderId, FolderListing, RemoteFile, RemoteFolder

__all__ = [
    "CallKind",
    "HostBudget",
    "MemoryBudget",
    "Rules",
    "SharedBudget",
    "host_budget_path",
    "namespace",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rules:
    """The spacings a budget enforces (seconds); the scheduler builds them from its ``Budgets``."""

    min_interval: float = 0.5
    listing_interval: float = 3.5
    same_folder_interval: float = 31.0
    all_files_interval: float = 3700.0
    user_info_interval: float = 310.0
    breaker_base: float = 60.0
    breaker_max: float = 1800.0
    user_info_ip_interval: float = 65.0

    def scaled(self, factor: float) -> Rules:
        return Rules(*(getattr(self, f) * factor for f in self.__dataclass_fields__))


@dataclass(frozen=True)
class CallKind:
    """What a metered call costs: ``kind`` is "call", "listing", "all_files" or "user_info"."""

    kind: str = "call"
    folder: Hashable | None = None  # listings of one folder share its 30 s clock
    account: str = ""  # user/info: whose 5 min clock ("" = not known yet: "*")

    def clocks(self) -> list[str]:
        names = ["start"]
        if self.kind in ("listing", "all_files"):
            names.append("listing")
            if self.kind == "all_files":
                names.append("all_files")
            elif self.folder is not None:
                names.append(f"folder:{self.folder}")
        elif self.kind == "user_info":
            names += ["user_info_ip", f"user_info:{self.account or '*'}"]
        return names

    def per_user(self) -> list[str]:
        """The clocks a refused key (AuthError) gets back: 1fichier never counted it for a user."""
        return [c for c in self.clocks() if c.startswith("user_info:")]


def _interval(rules: Rules, clock: str) -> float:
    if clock == "start":
        return rules.min_interval
    if clock == "listing":
        return rules.listing_interval
    if clock == "all_files":
        return rules.all_files_interval
    if clock == "user_info_ip":
        return rules.user_info_ip_interval
    if clock.startswith("user_info"):
        return rules.user_info_interval
    return rules.same_folder_interval  # folder:<id>


def _user_info_clocks(state: Mapping[str, float], name: str) -> list[float]:
    """The user/info clocks a call charging ``name`` must wait for (see the module docstring)."""
    if name == "user_info:*":  # unknown account: every account's (and the old host-wide one)
        return [t for k, t in state.items() if k.startswith("user_info:") or k == "user_info"]
    return [state.get(name, -math.inf), state.get("user_info:*", -math.inf), state.get("user_info", -math.inf)]


class SharedBudget(Protocol):
    """The clocks and breaker shared by the mounts of one account (see the module docstring)."""

    kind: str  # "none", "host" or "redis"

    async def acquire(self, call: CallKind, rules: Rules) -> float:
        """0 = the call may start now and is charged; else seconds to wait (nothing charged)."""
        ...

    async def release(self, call: CallKind, *, reached: bool, refused: bool = False) -> None:
        """After the charged call: move its clocks to now, or give them back if it never reached 1fichier
        (``refused``: 1fichier refused the key, so the per-user clocks are given back)."""
        ...

    async def trip(self, rules: Rules) -> float:
        """A flood lock: open the shared breaker (doubling per consecutive lock); seconds it stays open."""
        ...

    async def answered(self) -> None:
        """1fichier gave a real answer: reset the breaker's doubling."""
        ...

    async def history(self) -> dict[str, Any]:
        """The clocks as ages in seconds, in ``Scheduler.export_history`` form (for the start-up log)."""
        ...

    def download_lease(self, hold_after: float = 0.0) -> contextlib.AbstractAsyncContextManager[None]:
        """Held while this host downloads and ``hold_after`` s after (§3 #887: one location at a time)."""
        ...

    async def remember(self, key: str, value: Any, ttl: float) -> None:
        """Share a small JSON answer (the quota of user/info) with the other mounts for ``ttl`` s."""
        ...

    async def recall(self, key: str) -> Any | None:
        """What another mount (or this one) remembered under ``key``, if not expired."""
        ...

    async def publish_attrs(self, changes: Mapping[str, Mapping[str, int | None]]) -> None:
        """Attributes this mount set (mtime_ns, mode, uid, gid per file url / ``d:<folder id>``)."""
        ...

    async def attrs_since(self, cursor: str) -> tuple[str, list[tuple[str, dict[str, int | None]]]]:
        """Attributes the *other* mounts set after ``cursor`` ("" = all kept): (new cursor, [(key, values)])."""
        ...

    async def publish_feed(self, feed: str, items: Sequence[Mapping[str, Any]]) -> None:
        """Append small JSON items (in order) to ``feed`` for the other mounts (folder changes: listshare.py)."""
        ...

    async def feed_since(self, feed: str, cursor: str) -> tuple[str, list[dict[str, Any]]]:
        """Items the *other* mounts appended to ``feed`` after ``cursor``; ``""`` = none, only the cursor of now."""
        ...

    def status(self) -> dict[str, Any]:
        """For ``status``: kind, state ("ok" / "fallback"), waits caused by other mounts."""
        ...

    async def aclose(self) -> None: ...


def namespace(api_url: str, account: str = "") -> str:
    """A short stable id of (API URL, account); tests on different emulator ports never share one."""
    return hashlib.sha256(f"{api_url.rstrip('/')}\0{account}".encode()).hexdigest()[:20]


# ---------------------------------------------------------------------------------------------- the algorithm
# One pure function over a dict of clocks; MemoryBudget and HostBudget run it, the Lua script
# in RedisBudget is the same algorithm line for line.


def _acquire(state: dict[str, float], call: CallKind, rules: Rules, now: float) -> tuple[float, dict[str, float]]:
    """(wait, previous values of the charged clocks); ``wait == 0`` means charged."""
    ready = state.get("breaker_until", -math.inf)
    for name in call.clocks():
        last = max(_user_info_clocks(state, name), default=-math.inf) if name.startswith("user_info:") else \
            state.get(name, -math.inf)
        ready = max(ready, last + _interval(rules, name))
    if ready > now:
        return ready - now, {}
    saved = {name: state.get(name, -math.inf) for name in call.clocks()}
    for name in call.clocks():
        state[name] = now
    return 0.0, saved


def _release(state: dict[str, float], call: CallKind, saved: Mapping[str, float], charged_at: float,
             reached: bool, now: float, refused: bool = False) -> None:
    back = call.per_user() if refused else []  # a refused key: never counted for a user
    for name in call.clocks():
        if reached and name not in back:
            state[name] = max(state.get(name, -math.inf), now)
        elif state.get(name) == charged_at and name in saved:  # nobody charged it since: give it back
            state[name] = saved[name]


def _trip(state: dict[str, float], rules: Rules, now: float) -> float:
    until = state.get("breaker_until", -math.inf)
    if until > now:
        return until - now
    n = state.get("breaker_n", 0.0) + 1
    duration: float = min(rules.breaker_max, rules.breaker_base * 2.0 ** (n - 1))
    state["breaker_n"] = n
    state["breaker_until"] = now + duration
    state["breaker_opens"] = state.get("breaker_opens", 0.0) + 1
    return duration


def _history(state: Mapping[str, float], now: float, account: str = "") -> dict[str, Any]:
    def age(name: str) -> float | None:
        t = state.get(name)
        return None if t is None or t == -math.inf else max(0.0, now - t)

    folders = {k.split(":", 1)[1]: max(0.0, now - t) for k, t in state.items() if k.startswith("folder:")}
    return {
        "last_start": age("start"),
        "last_listing": age("listing"),
        "last_all_files": age("all_files"),
        "last_user_info": (lambda t: None if t == -math.inf else max(0.0, now - t))(
            max(_user_info_clocks(state, f"user_info:{account or '*'}"), default=-math.inf)),
        "folders": folders,
        "breaker_open_for": max(0.0, state.get("breaker_until", -math.inf) - now),
    }


def _prune(state: dict[str, float], rules: Rules, now: float) -> list[str]:
    """Forget folder clocks whose 30 s rule has lapsed; returns the names dropped."""
    horizon = now - max(rules.same_folder_interval, 31.0)
    gone = [k for k, t in state.items() if k.startswith("folder:") and t < horizon]
    for k in gone:
        del state[k]
    return gone


class _Stats:
    def __init__(self) -> None:
        self.waits = 0  # acquires refused because of the shared clocks
        self.trips = 0

    def as_dict(self) -> dict[str, Any]:
        return {"shared_waits": self.waits, "shared_trips": self.trips}


class MemoryBudget:
    """Clocks in this process only: the ``none`` mode, and the fallback of :class:`RedisBudget`."""

    kind = "none"

    def __init__(self, clock: Callable[[], float] = time.time, *, scale: float = 1.0, start: float = -math.inf,
                 folders_listed_at: float = -math.inf) -> None:
        self._clock = clock
        self._scale = scale
        self._state: dict[str, float] = {}
        self._folders_at = folders_listed_at  # fallback: every folder counts as listed at this time
        if start > -math.inf:
            self._state.update(start=start, listing=start, user_info=start, user_info_ip=start)
        self._charged: tuple[dict[str, float], float] = ({}, 0.0)
        self._stats = _Stats()
        self._memo: dict[str, tuple[float, str]] = {}

    async def acquire(self, call: CallKind, rules: Rules) -> float:
        now = self._clock()
        rules = rules.scaled(self._scale) if self._scale != 1.0 else rules
        if call.folder is not None and call.kind == "listing":
            self._state.setdefault(f"folder:{call.folder}", self._folders_at)
        wait, saved = _acquire(self._state, call, rules, now)
        if wait > 0:
            self._stats.waits += 1
        else:
            self._charged = (saved, now)
        _prune(self._state, rules, now)
        return wait

    async def release(self, call: CallKind, *, reached: bool, refused: bool = False) -> None:
        saved, at = self._charged
        _release(self._state, call, saved, at, reached, self._clock(), refused)

    async def trip(self, rules: Rules) -> float:
        self._stats.trips += 1
        return _trip(self._state, rules, self._clock())

    async def answered(self) -> None:
        self._state["breaker_n"] = 0.0

    async def history(self) -> dict[str, Any]:
        return _history(self._state, self._clock())

    @contextlib.asynccontextmanager
    async def download_lease(self, hold_after: float = 0.0) -> AsyncIterator[None]:
        yield

    async def remember(self, key: str, value: Any, ttl: float) -> None:
        self._memo[key] = (self._clock() + ttl, json.dumps(value))

    async def publish_attrs(self, changes: Mapping[str, Mapping[str, int | None]]) -> None:
        return None  # nobody else to tell

    async def attrs_since(self, cursor: str) -> tuple[str, list[tuple[str, dict[str, int | None]]]]:
        return cursor, []

    async def publish_feed(self, feed: str, items: Sequence[Mapping[str, Any]]) -> None:
        return None

    async def feed_since(self, feed: str, cursor: str) -> tuple[str, list[dict[str, Any]]]:
        return cursor or "0", []

    async def recall(self, key: str) -> Any | None:
        until, text = self._memo.get(key, (-math.inf, "null"))
        return json.loads(text) if until > self._clock() else None

    def status(self) -> dict[str, Any]:
        return {"kind": self.kind, "state": "ok", **self._stats.as_dict()}

    async def aclose(self) -> None:
        return None


def host_budget_path() -> Path:
    """The host-wide budget file: ``<user cache root>/fichierfs/host-budget.sqlite3``.

    Not under ``--cache-dir`` (two mounts with different cache dirs must share it) and not
    keyed by the API key; ``$FICHIERFS_HOST_BUDGET`` overrides it (tests, odd set-ups).
    """
    override = os.environ.get("FICHIERFS_HOST_BUDGET")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir("fichierfs")) / "host-budget.sqlite3"


class HostBudget:
    """The clocks in one SQLite file (WAL) shared by every mount of this host and user.

    Every acquire is one ``BEGIN IMMEDIATE`` transaction (SQLite's write lock, i.e. a file
    lock): read the namespace's clocks, decide, write the charged ones. Run in a worker
    thread so a mount waiting for another's transaction never blocks its event loop.
    """

    kind = "host"

    def __init__(self, path: Path, ns: str, clock: Callable[[], float] = time.time, *, account: str = "") -> None:
        self.path = path
        self.ns = ns
        self.account = account  # whose user/info clock the history shows ("" = not known yet)
        self._clock = clock
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        with contextlib.suppress(OSError):
            os.chmod(path, 0o600)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS clock (ns TEXT, name TEXT, t REAL, PRIMARY KEY (ns, name))")
        self._db.execute("CREATE TABLE IF NOT EXISTS memo (ns TEXT, key TEXT, value TEXT, until REAL, "
                         "PRIMARY KEY (ns, key))")
        self._db.execute("CREATE TABLE IF NOT EXISTS attrlog (seq INTEGER PRIMARY KEY AUTOINCREMENT, ns TEXT, "
                         "origin TEXT, key TEXT, value TEXT)")
        self._db.execute("CREATE TABLE IF NOT EXISTS feed (seq INTEGER PRIMARY KEY AUTOINCREMENT, ns TEXT, "
                         "feed TEXT, origin TEXT, value TEXT)")
        self._me = f"{os.getpid()}:{id(self)}"
        self._lock = trio.Lock()  # one transaction of this process at a time (one connection)
        self._charged: tuple[dict[str, float], float] = ({}, 0.0)
        self._stats = _Stats()

    def _txn(self, fn: Callable[[dict[str, float], float], Any], now: float) -> Any:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            state = {n: t for n, t in db.execute("SELECT name, t FROM clock WHERE ns = ?", (self.ns,))}
            before = dict(state)
            result = fn(state, now)
            changed = [(self.ns, n, t) for n, t in state.items() if before.get(n) != t]
            gone = [(self.ns, n) for n in before if n not in state]
            if changed:
                db.executemany("INSERT OR REPLACE INTO clock (ns, name, t) VALUES (?, ?, ?)", changed)
            if gone:
                db.executemany("DELETE FROM clock WHERE ns = ? AND name = ?", gone)
            db.execute("COMMIT")
            return result
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def _run(self, fn: Callable[[dict[str, float], float], Any]) -> Any:
        async with self._lock:
            return await trio.to_thread.run_sync(self._txn, fn, self._clock())

    async def acquire(self, call: CallKind, rules: Rules) -> float:
        def go(state: dict[str, float], now: float) -> float:
            wait, saved = _acquire(state, call, rules, now)
            if wait == 0:
                self._charged = (saved, now)
            _prune(state, rules, now)
            return wait

        wait: float = await self._run(go)
        if wait > 0:
            self._stats.waits += 1
        return wait

    async def release(self, call: CallKind, *, reached: bool, refused: bool = False) -> None:
        saved, at = self._charged
        await self._run(lambda state, now: _release(state, call, saved, at, reached, now, refused))

    async def trip(self, rules: Rules) -> float:
        self._stats.trips += 1
        duration: float = await self._run(lambda state, now: _trip(state, rules, now))
        return duration

    async def answered(self) -> None:
        def go(state: dict[str, float], now: float) -> None:
            if state.get("breaker_n"):
                state["breaker_n"] = 0.0

        await self._run(go)

    async def history(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._run(lambda state, now: _history(state, now, self.account))
        return result

    @contextlib.asynccontextmanager
    async def download_lease(self, hold_after: float = 0.0) -> AsyncIterator[None]:
        yield  # one host = one location (§3 #887 is per IP)

    async def remember(self, key: str, value: Any, ttl: float) -> None:
        row = (self.ns, key, json.dumps(value), self._clock() + ttl)  # in the trio thread (a test's clock)
        try:
            async with self._lock:
                await trio.to_thread.run_sync(
                    self._db.execute, "INSERT OR REPLACE INTO memo (ns, key, value, until) VALUES (?, ?, ?, ?)", row)
        except sqlite3.Error as exc:  # a shared memo is a nicety: never fail the caller for it
            log.debug("shared memo %s not saved: %s", key, exc)

    async def publish_attrs(self, changes: Mapping[str, Mapping[str, int | None]]) -> None:
        rows = [(self.ns, self._me, k, json.dumps(dict(v))) for k, v in changes.items()]

        def put() -> None:
            with self._db:
                self._db.executemany("INSERT INTO attrlog (ns, origin, key, value) VALUES (?, ?, ?, ?)", rows)
                self._db.execute("DELETE FROM attrlog WHERE seq < (SELECT MAX(seq) FROM attrlog) - 100000")

        try:
            async with self._lock:
                await trio.to_thread.run_sync(put)
        except sqlite3.Error as exc:
            log.debug("attributes not shared: %s", exc)

    async def attrs_since(self, cursor: str) -> tuple[str, list[tuple[str, dict[str, int | None]]]]:
        def get() -> tuple[str, list[tuple[str, dict[str, int | None]]]]:
            rows = self._db.execute("SELECT seq, origin, key, value FROM attrlog WHERE ns = ? AND seq > ? "
                                    "ORDER BY seq LIMIT 5000", (self.ns, int(cursor or 0))).fetchall()
            new = str(rows[-1][0]) if rows else cursor
            return new, [(k, json.loads(v)) for _, o, k, v in rows if o != self._me]

        try:
            async with self._lock:
                return await trio.to_thread.run_sync(get)
        except (sqlite3.Error, ValueError) as exc:
            log.debug("shared attributes unreadable: %s", exc)
            return cursor, []

    async def publish_feed(self, feed: str, items: Sequence[Mapping[str, Any]]) -> None:
        rows = [(self.ns, feed, self._me, json.dumps(dict(i))) for i in items]

        def put() -> None:
            with self._db:
                self._db.executemany("INSERT INTO feed (ns, feed, origin, value) VALUES (?, ?, ?, ?)", rows)
                self._db.execute("DELETE FROM feed WHERE seq < (SELECT MAX(seq) FROM feed) - 20000")

        try:
            async with self._lock:
                await trio.to_thread.run_sync(put)
        except sqlite3.Error as exc:
            log.debug("feed %s not shared: %s", feed, exc)

    async def feed_since(self, feed: str, cursor: str) -> tuple[str, list[dict[str, Any]]]:
        def get() -> tuple[str, list[dict[str, Any]]]:
            if not cursor:
                row = self._db.execute("SELECT MAX(seq) FROM feed").fetchone()
                return str(row[0] or 0), []
            rows = self._db.execute("SELECT seq, origin, value FROM feed WHERE ns = ? AND feed = ? AND seq > ? "
                                    "ORDER BY seq LIMIT 5000", (self.ns, feed, int(cursor))).fetchall()
            new = str(rows[-1][0]) if rows else cursor
            return new, [json.loads(v) for _, o, v in rows if o != self._me]

        try:
            async with self._lock:
                return await trio.to_thread.run_sync(get)
        except (sqlite3.Error, ValueError) as exc:
            log.debug("feed %s unreadable: %s", feed, exc)
            return cursor, []

    async def recall(self, key: str) -> Any | None:
        now = self._clock()

        def get() -> Any | None:
            row = self._db.execute("SELECT value FROM memo WHERE ns = ? AND key = ? AND until > ?",
                                   (self.ns, key, now)).fetchone()
            return None if row is None else json.loads(row[0])

        try:
            async with self._lock:
                return await trio.to_thread.run_sync(get)
        except (sqlite3.Error, ValueError) as exc:
            log.debug("shared memo %s unreadable: %s", key, exc)
            return None

    def status(self) -> dict[str, Any]:
        return {"kind": self.kind, "state": "ok", "path": str(self.path), **self._stats.as_dict()}

    async def aclose(self) -> None:
        async with self._lock:
            self._db.close()



# ---------------------------------------------------------------------------------------------- shared listings
# A listing made by one mount serves the others while the folder could not be listed again
# anyway (its 30 s clock, §4): two mounts walking one tree list each folder once between them.
# Any change made through a mount bumps the namespace's generation; a listing published under
# an older generation is never served (it may predate the change).


def listing_to_json(listing: FolderListing) -> dict[str, Any]:
    def when(d: datetime | None) -> str | None:
        return None if d is None else d.isoformat()

    return {
        "folder_id": int(listing.folder_id), "name": listing.name, "create_date": when(listing.create_date),
        "sub_folders": [[int(f.id), f.name, when(f.create_date), f.password] for f in listing.sub_folders],
        "files": [[str(f.url), f.filename, f.size, when(f.date), f.checksum, f.content_type, f.password, f.acl,
                   f.cdn, None if f.folder_id is None else int(f.folder_id), f.description] for f in listing.files],
    }


def listing_from_json(d: Mapping[str, Any]) -> FolderListing:
    def when(s: str | None) -> datetime | None:
        return None if s is None else datetime.fromisoformat(s)

    return FolderListing(
        folder_id=FolderId(int(d["folder_id"])), name=str(d["name"]), create_date=when(d["create_date"]),
        sub_folders=tuple(RemoteFolder(FolderId(int(i)), str(n), when(c), bool(p)) for i, n, c, p in d["sub_folders"]),
        files=tuple(RemoteFile(FileUrl(u), fn, int(sz), when(dt), ck, ct, bool(pw), bool(acl), bool(cdn),
                               None if fid is None else FolderId(int(fid)), desc)
                    for u, fn, sz, dt, ck, ct, pw, acl, cdn, fid, desc in d["files"]),
    )


async def generation(shared: SharedBudget) -> int:
    """The namespace's change counter (read before a listing starts, published with it)."""
    return int(await shared.recall("generation") or 0)


async def changed(shared: SharedBudget) -> None:
    """This mount changed something: listings published before now are not served any more."""
    await shared.remember("generation", await generation(shared) + 1, 30 * 86400.0)


async def publish_listing(shared: SharedBudget, folder: Hashable, listing: FolderListing, gen: int,
                          ttl: float) -> None:
    """Offer ``listing`` (made under generation ``gen``) to the other mounts for ``ttl`` seconds.

    The metadata layer may call this too, after it merged a change of its own into a folder.
    """
    await shared.remember(f"ls:{folder}", {"gen": gen, "listing": listing_to_json(listing)}, ttl)


async def recall_listing(shared: SharedBudget, folder: Hashable) -> FolderListing | None:
    """A listing of ``folder`` another mount published, if still current."""
    doc = await shared.recall(f"ls:{folder}")
    if not doc or int(doc.get("gen", -1)) != await generation(shared):
        return None
    try:
        return listing_from_json(doc["listing"])
    except (KeyError, TypeError, ValueError) as exc:
        log.debug("shared listing of %s unreadable: %s", folder, exc)
        return None
