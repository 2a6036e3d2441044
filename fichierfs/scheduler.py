"""The API scheduler: the only code that calls the 1fichier API client.

1fichier punishes chatty clients. Crossing one of its limits earns ``Flood detected: IP Locked
#412`` and a ban that grows while the client keeps calling (1fichier-api.md §3, §4). Every
request of fichierfs therefore goes through :meth:`Scheduler.call`, which decides *when* the
client method runs.

Design
======

Callers do not call the client. They hand a bound client method and its arguments to
:meth:`Scheduler.call` (``await scheduler.call(client.folder_ls, folder_id, lane=Lane.PREFETCH)``,
trio's ``fn, *args`` style), which returns what the method returns, typed. The endpoint of
the method (``@endpoint("folder/ls")`` in :mod:`fichierfs.api`) picks the budgets and the
coalescing rule. The call becomes a *job* in one queue; the caller waits for its outcome. A
single dispatcher task (:meth:`Scheduler.run`) looks at the queue whenever something changes
and starts at most one metered job at a time, in a task of its own nursery::

    caller ─┐                         ┌─ budgets: min_interval, listing_interval,
    caller ─┼─► queue (lane, seq) ───►│  same_folder_interval, all_files_interval,
    caller ─┘   coalescing map        │  user_info_interval, breaker, retry back-off
                                      └─► one job in flight ─► client.<endpoint>()

* **Lanes.** The dispatcher walks the queue in ``(lane, seq)`` order: INTERACTIVE, then
  PREFETCH, WRITEBACK, BACKGROUND, first come first served inside a lane. It starts the
  first job that may start *now*. A job held back only by its own endpoint's budget (a
  second listing of one folder, a ``user/info`` too soon, a retry back-off) is skipped, so
  it does not block a token call or a listing of another folder behind it.
* **Metered calls** (every ``api.1fichier.com/v1`` endpoint) start at least
  ``min_interval`` apart, one at a time. Listings (``folder/ls``, ``file/ls``) also keep
  ``listing_interval`` between any two of them and ``same_folder_interval`` between two of
  one folder (both endpoints share the per-folder clock). ``file/ls`` of folder ``-1`` (all
  files) keeps ``all_files_interval``; ``user/info`` keeps ``user_info_interval``.
* **Unmetered legs** (``upload.cgi``, ``end.pl``, ``download``) go to upload or download
  nodes, not to the API. They bypass the queue, the pacing and the breaker (downloads keep
  working while the API is flood-locked, §4), run in the caller's task under a
  ``CapacityLimiter(max_concurrent_transfers)``, and are counted in :meth:`statistics`.
* **Coalescing.** Identical read-only calls (``user/info``, ``folder/ls``, ``file/ls``,
  ``file/info``, ``download/get_token``) that are queued or in flight share one job: one
  client call, one result or exception for every waiter. A mutation never coalesces.
  ``download/get_token`` with ``single=True`` does not coalesce by default either: such a
  link serves one connection (§5), so two readers must not share it.
* **Flood breaker.** ``FloodLocked`` from any call opens one breaker for everything. No
  metered call starts for ``breaker_base * 2**(n-1)`` seconds (n = consecutive opens, capped
  at ``breaker_max``). Then it is half-open: exactly one call (the next one the dispatcher
  picks) goes through. Any answer from the API other than a flood lock closes it and resets
  the doubling; another flood lock re-opens it for twice as long. The job that hit the lock
  goes back to the queue with its old place (its ``seq``). Nobody sleeps inline on a flood
  (design.md §8). An INTERACTIVE caller does not wait longer than ``stall_limit`` for the
  breaker or the budgets: it gets :class:`~fichierfs.errors.FloodLocked` (errno EAGAIN)
  with an attribute ``retry_after`` (seconds from now until the call could start).
* **Transient errors** (``.retryable``, not a flood lock) are retried up to ``retries``
  times with capped exponential back-off and jitter. The back-off is a ``not_before`` time
  on the queued job, so it holds neither the dispatcher nor the other jobs. Other errors
  (``NotFound``, ``RequestRejected``, a bug in the client …) reach the waiters at once.
* **AuthError** (revoked or wrong key, §3) fails every queued metered job and every later
  metered call with the same error, without calling the API again: a revoked key must not
  be hammered (rclone #6165; §8 item 10).

Invariants (``tests/unit/test_scheduler.py`` checks them, also with hypothesis)
================================================================================

1. Two metered starts are at least ``min_interval`` apart, and at most one metered call is
   in flight.
2. Two listings start at least ``listing_interval`` apart; two listings of one folder at
   least ``same_folder_interval`` apart; two all-files listings ``all_files_interval``; two
   ``user/info`` calls ``user_info_interval``.
3. No metered call starts while the breaker is open; in the half-open state only one does.
4. A caller cancelled while its job is queued leaves no trace (the job leaves the queue
   when its last waiter leaves). A job that already started runs to its end, for the other
   waiters of a coalesced call.
5. Budgets are charged when a call *starts* (that is when 1fichier sees it), whatever its
   outcome.

Lifecycle
=========

The scheduler follows the project's background-task shape (design.md §7): start it in a
nursery with ``await nursery.start(scheduler.run)`` and end it with ``scheduler.stop()`` (or
by cancelling the nursery). Metered calls made while it is not running raise
``RuntimeError``; jobs still waiting when it stops get ``trio.ClosedResourceError``.
Unmetered legs work without the dispatcher.

All times are seconds on ``clock`` (default ``trio.current_time``); tests use trio's
``MockClock(autojump_threshold=0)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import math
import random
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, TypeVar, TypeVarTuple, cast

import trio

from .api import FichierClient, endpoint_of
from .budget import CallKind, Rules, SharedBudget, changed, generation, publish_listing, recall_listing
from .errors import ApiError, AuthError, FichierError, FloodLocked, NotAllowed, ServerError
from .log import api_error_line

__all__ = ["LISTINGS", "METERED_READ_ONLY", "UNMETERED", "ApiCaller", "Budgets", "Lane", "Scheduler"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

# Endpoint names are the API paths without ".cgi" (1fichier-api.md §2), plus three node legs.
UNMETERED = frozenset({
    "upload.cgi",  # POST https://NODE/upload.cgi (§6): FichierClient.upload_post
    "end.pl",  # GET https://NODE/end.pl (§6): FichierClient.upload_end
    "download",  # GET of a download token URL (§5): FichierClient.download_range
})
"""Legs that do not touch api.1fichier.com."""

METERED_READ_ONLY = frozenset({"user/info", "folder/ls", "file/ls", "file/info", "download/get_token"})
"""Read-only API endpoints; identical concurrent calls of these share one API call."""

LISTINGS = frozenset({"folder/ls", "file/ls"})
LOCATION_RETRIES = 6  # "Only 1 location allowed #887" waited out for two location windows (Scheduler._located)
"""Listing endpoints: ≈ 1 per 3 s overall, 1 per folder per 30 s (§4, §2.2, §2.3)."""

ALL_FILES = -1  # file/ls folder_id -1 = every file of the account, ≤ 1/hour (§2.3, §4)
ROOT = 0  # folder_id 0 or absent = root (§2.2, §2.3)

# Unmetered legs that must not be repeated by default: a second upload POST after a
# successful one duplicates the file (§8 item 7); a failed ranged GET usually means the
# link expired, which a new token (the reader's business) cures, not a repeat (§5).
_NO_RETRY_BY_DEFAULT = frozenset({"upload.cgi", "download"})


class Lane(enum.IntEnum):
    """Priority of a call; a lower value starts first (design.md Part A §5.1)."""

    INTERACTIVE = 0  # a FUSE request is waiting: lookup, readdir, open, read
    PREFETCH = 1  # read-ahead, listing of a folder the user is likely to open
    WRITEBACK = 2  # upload pipeline, deletes after a replace
    BACKGROUND = 3  # refresh of cached listings, quota


_INT_FIELDS = frozenset({"retries", "max_concurrent_transfers"})


@dataclass(frozen=True)
class Budgets:
    """Pacing rules, all times in seconds. Defaults sit safely under 1fichier's limits.

    Attributes:
        min_interval: between the starts of any two metered API calls. The doc says
            3 requests/s, 2020 experience says barely 2/s, rclone waits 0.4 s (§4).
        listing_interval: between any two listings (folder/ls, file/ls); ≈ 1 per 3 s
            observed by rclone's maintainer (§4, §8 item 4).
        same_folder_interval: between two listings of one folder; apidoc "1 request per
            folder per 30 s" (§2.2, §4).
        all_files_interval: between two ``file/ls`` of folder -1; apidoc "1 request per
            hour" (§2.3, §4).
        user_info_interval: between two ``user/info``; apidoc 1/min per IP and 1/5 min per
            user, JD saw a lock after less than 5 min (§4, §8 item 14).
        breaker_base: how long the breaker stays open after a first flood lock. rclone
            waits 30 s, JD 5 min (§3, §4, §8 item 10).
        breaker_max: cap of the open time, which doubles with each consecutive flood lock.
        retry_base: first back-off after a transient error; doubles per attempt.
        retry_max: cap of one back-off.
        retries: how many times a transient error is retried (so ``retries + 1`` attempts).
        stall_limit: the longest an INTERACTIVE call waits for the breaker or the budgets
            before it fails with ``FloodLocked`` (EAGAIN). It fails at once when the wait is
            known to be longer (breaker open for 60 s, a folder listed 1 s ago). Counted from
            the call, or from the end of a transient-error back-off.
        max_concurrent_transfers: concurrent unmetered legs (download, upload.cgi, end.pl);
            1fichier allows about 30 connections per premium account (§5, §8 item 9).
        location_window: how long a host stays 1fichier's download location after its last
            download (§3 #887; the length is [UNVERIFIED], the emulator's guess is 30 s). With a
            coordinator, another host waits this long before it takes the download lease.
    """

    min_interval: float = 0.5
    listing_interval: float = 3.5
    same_folder_interval: float = 31.0
    all_files_interval: float = 3700.0
    user_info_interval: float = 310.0
    breaker_base: float = 60.0
    breaker_max: float = 1800.0
    retry_base: float = 1.0
    retry_max: float = 60.0
    retries: int = 4
    stall_limit: float = 30.0
    max_concurrent_transfers: int = 8
    location_window: float = 31.0
    user_info_ip_interval: float = 65.0  # shared budgets only: user/info 1 per minute per IP (§2.1)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if getattr(self, f.name) < 0:
                raise ValueError(f"Budgets.{f.name} must not be negative")
        if self.max_concurrent_transfers < 1:
            raise ValueError("Budgets.max_concurrent_transfers must be at least 1")

    def scaled(self, factor: float) -> Budgets:
        """Return a copy with every time (not the counts) multiplied by ``factor`` (> 0).

        Used by tests and by the emulator's time-scale knob.
        """
        if not factor > 0:
            raise ValueError("factor must be positive")
        changes = {
            f.name: getattr(self, f.name) * factor for f in dataclasses.fields(self) if f.name not in _INT_FIELDS
        }
        return dataclasses.replace(self, **changes)


class ApiCaller(Protocol):
    """The seam between the API and the parts above it (meta, reader, writer, vfs).

    :class:`Scheduler` is the product's one implementation; unit tests give fakes. A part
    calls the API only as ``await caller.call(caller.client.<method>, *args, lane=…)``.
    """

    @property
    def client(self) -> FichierClient:
        """The API client whose bound methods are handed to :meth:`call`."""
        ...

    async def call(
        self,
        fn: Callable[[*Ts], Awaitable[T]],
        /,
        *args: *Ts,
        lane: Lane = ...,
        coalesce: bool | None = ...,
        retries: int | None = ...,
        **kwargs: Any,
    ) -> T:
        """Run ``fn(*args, **kwargs)`` under the budgets; see :meth:`Scheduler.call`."""
        ...

    def next_allowed(self, endpoint: str | Callable[..., Awaitable[object]], folder_id: object = None) -> float:
        """Seconds until a call of ``endpoint`` may start; see :meth:`Scheduler.next_allowed`."""
        ...

    def statistics(self) -> dict[str, Any]:
        """The ``api`` section of the status document; see :meth:`Scheduler.statistics`."""
        ...


class _State(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"


@dataclass(eq=False)
class _Waiter:
    lane: Lane
    deadline: float  # clock time after which an INTERACTIVE waiter gives up; inf otherwise
    retries: int


@dataclass(eq=False)
class _Job:
    """One metered client call, shared by all its (coalesced) waiters."""

    endpoint: str
    method: Callable[..., Awaitable[Any]]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    key: Hashable | None  # coalescing key, None = never shared
    folder: Hashable | None  # folder of a listing, None for other endpoints
    seq: int
    retries: int
    waiters: list[_Waiter] = field(default_factory=list)
    state: _State = _State.QUEUED
    not_before: float = -math.inf  # retry back-off
    attempts: int = 0
    result: Any = None
    error: BaseException | None = None
    error_tb: TracebackType | None = None
    last_error: BaseException | None = None  # the transient error of the last attempt, if any
    saved_clocks: tuple[Any, ...] | None = None  # budget clocks before this job was charged
    shared_gen: int | None = None  # the shared change generation when this listing started
    changed: trio.Event = field(default_factory=trio.Event)

    @property
    def lane(self) -> Lane:
        return min((w.lane for w in self.waiters), default=Lane.BACKGROUND)

    def poke(self) -> None:
        """Wake every waiter so that it looks at the job (and the breaker) again."""
        ev, self.changed = self.changed, trio.Event()
        ev.set()


def _normalize(endpoint: str) -> str:
    if endpoint in UNMETERED:
        return endpoint
    endpoint = endpoint.strip("/")
    return endpoint[: -len(".cgi")] if endpoint.endswith(".cgi") else endpoint


def _endpoint(fn: object) -> str:
    """The endpoint of a client method (``@endpoint`` in api.py), or a clear TypeError."""
    name = endpoint_of(fn)
    if name is None:
        if isinstance(fn, str):
            raise TypeError(f"Scheduler.call takes a client method (client.folder_ls), not the string {fn!r}")
        raise TypeError(f"{fn!r} is not a FichierClient endpoint method (no @endpoint mark)")
    return name


def _folder_key(folder_id: Any) -> Hashable:
    if folder_id is None:
        return ROOT  # absent folder_id lists the root (§2.2, §2.3)
    try:
        return int(folder_id)
    except (TypeError, ValueError):
        return str(folder_id)


class Scheduler:
    """Runs every 1fichier API call under the budgets, lanes, coalescing and flood breaker.

    See the module docstring for the design. Start it with ``await nursery.start(sched.run)``
    and stop it with :meth:`stop`.

    Args:
        client: the API client, kept as :attr:`client` so that the parts above reach its
            methods through the scheduler: ``scheduler.call(scheduler.client.folder_ls, 5)``.
        budgets: the pacing rules (seconds).
        clock: returns the current time in seconds; must advance like trio's clock, since
            the dispatcher sleeps with trio (the default is ``trio.current_time``).
        jitter: returns a float in [0, 1); the back-off is ``d * (0.5 + 0.5 * jitter())``.
            Tests inject a constant.
    """

    def __init__(
        self,
        client: FichierClient,
        budgets: Budgets = Budgets(),
        clock: Callable[[], float] = trio.current_time,
        *,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.client = client
        self.budgets = budgets
        self._clock = clock
        self._jitter = jitter
        self._transfers = trio.CapacityLimiter(budgets.max_concurrent_transfers)

        self._queue: list[_Job] = []  # QUEUED metered jobs, any order
        self._coalesce: dict[Hashable, _Job] = {}  # key → queued or running job
        self._running_job: _Job | None = None
        self._seq = 0
        self._wakeup = trio.Event()
        self._nursery: trio.Nursery | None = None

        # budget clocks: start times of the last calls
        self._last_start = -math.inf
        self._last_listing = -math.inf
        self._last_folder: dict[Hashable, float] = {}
        self._last_all_files = -math.inf
        self._last_user_info = -math.inf
        self._recent: deque[float] = deque()  # metered starts in the last 60 s

        # breaker
        self.on_charge: Callable[[], None] | None = None
        """Called (synchronously) when a listing or user/info is charged; the mount saves history."""
        self._tripped = False  # open or half-open
        self._open_until = -math.inf
        self._consecutive = 0
        self._opens = 0
        self._last_flood: FloodLocked | None = None

        self.shared: SharedBudget | None = None
        # listings published to other mounts are the account's: folder 0 is every account's root
        self.share_scope: str = ""
        """The budget of the other mounts of this account (fichierfs.budget); set before :meth:`run`."""
        self._shared_busy = False  # a shared acquire/release is under way: start nothing else

        self._auth_error: AuthError | None = None

        self._calls: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._unreachable: tuple[float, str] | None = None  # (since, why): no answer from 1fichier
        self._retried = 0
        self._coalesced = 0
        self._stalled = 0
        self._shared_waits = 0
        self._shared_listings = 0
        self._location_waits = 0
        self._shared_tripped = False

    # ------------------------------------------------------------------ lifecycle

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The dispatcher. Start it with ``await nursery.start(scheduler.run)``; runs until
        :meth:`stop` or cancellation. Jobs still waiting then get ``trio.ClosedResourceError``."""
        if self._nursery is not None:
            raise RuntimeError("Scheduler.run() is already running")
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await self._dispatch()
        finally:
            self._nursery = None
            closed = trio.ClosedResourceError("the API scheduler stopped")
            for job in [*self._queue, *([self._running_job] if self._running_job else [])]:
                self._finish(job, error=closed)
            self._running_job = None

    def stop(self) -> None:
        """Stop the dispatcher (sync; returns at once). Waiting metered calls fail."""
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    # ------------------------------------------------------------------ public API

    async def call(
        self,
        fn: Callable[[*Ts], Awaitable[T]],
        /,
        *args: *Ts,
        lane: Lane = Lane.INTERACTIVE,
        coalesce: bool | None = None,
        retries: int | None = None,
        **kwargs: Any,
    ) -> T:
        """Run ``fn(*args, **kwargs)`` when the budgets and lane priority allow; return its result.

        Args:
            fn: a client method marked with ``@endpoint`` (``scheduler.client.folder_ls``); its
                endpoint (an API path such as ``"folder/ls"``, or one of the unmetered legs
                ``"upload.cgi"``, ``"end.pl"``, ``"download"``) picks the budgets and the
                coalescing rule. The positional arguments and the result are typed through
                ``fn``; keyword arguments (``files=True``, ``rename=…``) are passed through
                unchecked by the type checker (a ParamSpec cannot carry ``lane`` besides them).
            lane: priority (see :class:`Lane`). Only INTERACTIVE calls give up after
                ``budgets.stall_limit`` seconds of waiting for the breaker or the budgets.
            coalesce: share one call with identical in-flight calls. None = the endpoint's
                default (read-only endpoints yes, mutations no); True on a mutation is a
                ``ValueError``.
            retries: how many times a transient error is retried; default
                ``budgets.retries`` (0 for ``upload.cgi`` and ``download``).

        Returns:
            what ``fn`` returns.

        Raises:
            FloodLocked: an INTERACTIVE call could not start within ``stall_limit``; it has
                ``retry_after`` (seconds until it could start), or an unmetered leg was
                flood-locked.
            AuthError: the key is refused (now or by an earlier call).
            FichierError: the client's error once retries are exhausted or not allowed.
            RuntimeError: a metered call while the dispatcher is not running.
        """
        name = _endpoint(fn)
        lane = Lane(lane)
        if name in UNMETERED:
            if coalesce:
                raise ValueError(f"{name} never coalesces")
            if name == "download" and self.shared is not None:
                return await self._located(name, fn, args, kwargs, lane, coalesce, retries)
            n = retries if retries is not None else (0 if name in _NO_RETRY_BY_DEFAULT else self.budgets.retries)
            return await self._call_unmetered(name, fn, args, kwargs, n)
        if name == "download/get_token" and self.shared is not None:  # §3 #887: a token makes us the location
            return await self._located(name, fn, args, kwargs, lane, coalesce, retries)
        return await self._call_metered(name, fn, args, kwargs, lane, coalesce, retries)

    async def _located(
        self, name: str, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], kwargs: dict[str, Any], lane: Lane,
        coalesce: bool | None, retries: int | None,
    ) -> T:
        """A download leg of a mount that shares the account (§3 #887: one location at a time).

        The shared lease makes the hosts take turns; when it cannot (the coordinator is gone, or
        something outside fichierfs downloads), 1fichier's "Only 1 location allowed #887" means
        "another location is downloading": wait a third of ``location_window`` and try again,
        for up to two windows, rather than fail the read.
        """
        assert self.shared is not None
        attempt = 0
        while True:
            attempt += 1
            try:
                if name == "download":
                    n = retries if retries is not None else 0
                    return await self._call_unmetered(name, fn, args, kwargs, n)
                async with self.shared.download_lease(self.budgets.location_window):
                    return await self._call_metered(name, fn, args, kwargs, lane, coalesce, retries)
            except NotAllowed as exc:
                if exc.code != 887 or attempt > LOCATION_RETRIES:
                    raise
                self._location_waits += 1
                wait = self.budgets.location_window / 3
                log.warning("1fichier refused a download: another location of the account is downloading "
                            "(§3 #887; %s); trying again in %.0f s", self.shared.status().get("download_lease"), wait)
                await trio.sleep(wait)

    async def _call_metered(
        self, name: str, fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], kwargs: dict[str, Any], lane: Lane,
        coalesce: bool | None, retries: int | None,
    ) -> T:
        if self._auth_error is not None:
            raise self._auth_error.with_traceback(None)
        if self._nursery is None:
            raise RuntimeError("the API scheduler is not running; start it with nursery.start(scheduler.run)")

        key = self._coalescing_key(name, args, kwargs, coalesce)
        now = self._clock()
        deadline = now + self.budgets.stall_limit if lane is Lane.INTERACTIVE else math.inf
        waiter = _Waiter(lane, deadline, self.budgets.retries if retries is None else retries)
        job = self._coalesce.get(key) if key is not None else None
        if job is None:
            self._seq += 1
            folder = None
            if name in LISTINGS:
                folder = _folder_key(kwargs["folder_id"] if "folder_id" in kwargs else (args[0] if args else None))
            job = _Job(name, fn, args, kwargs, key, folder, self._seq, waiter.retries)
            self._queue.append(job)
            if key is not None:
                self._coalesce[key] = job
        else:
            self._coalesced += 1
            job.retries = max(job.retries, waiter.retries)
        job.waiters.append(waiter)
        self._wake()
        try:
            return cast(T, await self._wait(job, waiter))
        except BaseException:
            self._withdraw(job, waiter)
            raise

    def next_allowed(self, endpoint: str | Callable[..., Awaitable[object]], folder_id: object = None) -> float:
        """Seconds until a call of ``endpoint`` may start (0 = now), ignoring the queue.

        ``endpoint`` is a client method (``client.folder_ls``) or an endpoint name
        (``"folder/ls"``, a ``.cgi`` suffix is accepted). For a listing,
        ``folder_id`` adds the per-folder rule (-1 with ``file/ls`` = all
        files); None leaves it out. Unmetered legs: always 0. After an AuthError: ``inf``.
        """
        name = _normalize(endpoint) if isinstance(endpoint, str) else _endpoint(endpoint)
        if name in UNMETERED:
            return 0.0
        if self._auth_error is not None:
            return math.inf
        folder = None if folder_id is None else _folder_key(folder_id)
        return max(0.0, self._ready_at(name, folder) - self._clock())

    def statistics(self) -> dict[str, Any]:
        """A snapshot for ``status`` and tests (plain JSON-able values, times in seconds).

        Keys: ``calls`` and ``errors`` (per endpoint, counting attempts), ``queued`` (jobs
        per lane name), ``in_flight`` (metered, 0 or 1), ``transfers_in_flight``,
        ``breaker`` ("closed" / "open" / "half-open"), ``breaker_opens`` (total),
        ``breaker_closes_in``, ``next_call_in`` (until any metered call may start),
        ``calls_last_60s`` (metered starts), ``calls_left_this_minute`` (at
        ``min_interval``), ``retries``, ``coalesced`` (waiters that joined another call),
        ``stalled`` (INTERACTIVE calls that gave up), ``auth_failed``.
        """
        now = self._clock()
        self._prune_recent(now)
        queued = Counter(job.lane.name.lower() for job in self._queue)
        per_minute = math.floor(60.0 / self.budgets.min_interval) if self.budgets.min_interval > 0 else math.inf
        shared: dict[str, Any] = {}
        if self.shared is not None:
            shared = {"shared_waits": self._shared_waits, "shared_listings": self._shared_listings,
                      "location_waits": self._location_waits,
                      "coordinator": self.shared.status()}
        return {
            **shared,
            "calls": dict(self._calls),
            "errors": dict(self._errors),
            "queued": {lane.name.lower(): queued.get(lane.name.lower(), 0) for lane in Lane},
            "in_flight": 0 if self._running_job is None else 1,
            "transfers_in_flight": self._transfers.borrowed_tokens,
            "breaker": self._breaker_state(now),
            "breaker_opens": self._opens,
            "breaker_closes_in": max(0.0, self._open_until - now) if self._tripped else 0.0,
            "next_call_in": self.next_allowed("file/info"),
            "calls_last_60s": len(self._recent),
            "calls_left_this_minute": max(0, per_minute - len(self._recent)),
            "retries": self._retried,
            "coalesced": self._coalesced,
            "stalled": self._stalled,
            "auth_failed": self._auth_error is not None,
            "connection": "ok" if self._unreachable is None else "unreachable",
            "unreachable_for": 0.0 if self._unreachable is None else round(now - self._unreachable[0], 1),
            "unreachable_error": None if self._unreachable is None else self._unreachable[1],
        }

    # ------------------------------------------------------------------ budgets and breaker

    def _ready_at(self, endpoint: str, folder: Hashable | None) -> float:
        """Earliest clock time at which a metered call may start (breaker and budgets)."""
        b = self.budgets
        t = self._last_start + b.min_interval
        if self._tripped:
            t = max(t, self._open_until)
        if endpoint in LISTINGS:
            t = max(t, self._last_listing + b.listing_interval)
            if endpoint == "file/ls" and folder == ALL_FILES:
                t = max(t, self._last_all_files + b.all_files_interval)
            elif folder is not None:
                t = max(t, self._last_folder.get(folder, -math.inf) + b.same_folder_interval)
        elif endpoint == "user/info":
            t = max(t, self._last_user_info + b.user_info_interval)
        return t

    def _charge(self, job: _Job, now: float) -> None:
        job.saved_clocks = (self._last_start, self._last_listing, self._last_all_files, self._last_user_info,
                            self._last_folder.get(job.folder, -math.inf) if job.folder is not None else None)
        self._charge_clocks(job, now)
        if self.on_charge is not None and job.endpoint in LISTINGS | {"user/info"}:
            try:  # persist BEFORE the call goes out: a kill -9 right after must not forget it
                self.on_charge()
            except Exception:  # noqa: BLE001 - saving history must never break a call
                log.debug("on_charge hook failed", exc_info=True)

    def _charge_end(self, job: _Job, now: float) -> None:
        """Move the budget clocks to the END of a call that reached 1fichier.

        1fichier counts calls when they arrive; we know when we *started* them. A start that
        was late on the wire (a loaded event loop, a slow network) would let the next call
        arrive closer than the budget says. Spacing from the previous call's answer — which
        comes after its arrival — keeps the spacing on 1fichier's side at least the budget
        (a mount-tier run on a loaded machine earned a lock without this).
        """
        self._last_start = max(self._last_start, now)
        if job.endpoint in LISTINGS:
            self._last_listing = max(self._last_listing, now)
            if job.endpoint == "file/ls" and job.folder == ALL_FILES:
                self._last_all_files = max(self._last_all_files, now)
            elif job.folder is not None:
                self._last_folder[job.folder] = max(self._last_folder.get(job.folder, -math.inf), now)
        elif job.endpoint == "user/info":
            self._last_user_info = max(self._last_user_info, now)

    def _uncharge(self, job: _Job) -> None:
        """Give back the budget of a call that never reached 1fichier (connection refused)."""
        if job.saved_clocks is None:
            return
        start, listing, all_files, user_info, folder = job.saved_clocks
        self._last_start, self._last_listing = start, listing
        self._last_all_files, self._last_user_info = all_files, user_info
        if job.folder is not None and folder is not None:
            if folder == -math.inf:
                self._last_folder.pop(job.folder, None)
            else:
                self._last_folder[job.folder] = folder
        job.saved_clocks = None

    def _charge_clocks(self, job: _Job, now: float) -> None:
        self._last_start = now
        self._prune_recent(now)
        self._recent.append(now)
        if job.endpoint in LISTINGS:
            self._last_listing = now
            if job.endpoint == "file/ls" and job.folder == ALL_FILES:
                self._last_all_files = now
            else:
                horizon = now - self.budgets.same_folder_interval
                if len(self._last_folder) > 256:  # forget folders whose rule has lapsed
                    self._last_folder = {k: t for k, t in self._last_folder.items() if t > horizon}
                self._last_folder[job.folder] = now
        elif job.endpoint == "user/info":
            self._last_user_info = now

    # ------------------------------------------------------------------ history across mounts
    def export_history(self) -> dict[str, Any]:
        """The budget clocks as ages in seconds (how long ago each last started), for a new process.

        1fichier's limits (§4) know nothing of our restarts: a remount that lists the root again
        within 30 s earns a flood lock unless the new process knows when the old one listed it.
        Folder keys are strings (JSON); ages beyond every interval are left out.
        """
        now = self._clock()
        b = self.budgets

        def age(t: float) -> float | None:
            return None if t == -math.inf else now - t

        folders = {str(k): now - t for k, t in self._last_folder.items() if now - t < b.same_folder_interval}
        return {
            "last_start": age(self._last_start),
            "last_listing": age(self._last_listing),
            "last_all_files": age(self._last_all_files),
            "last_user_info": age(self._last_user_info),
            "folders": folders,
            "breaker_open_for": max(0.0, self._open_until - now) if self._tripped else 0.0,
        }

    def import_history(self, history: dict[str, Any], elapsed: float) -> None:
        """Restore clocks from :meth:`export_history` saved ``elapsed`` seconds ago (wall clock).

        Call before :meth:`run`. A breaker that was open is re-opened for what is left of it.
        """
        now = self._clock()
        elapsed = max(0.0, elapsed)

        def back(age: Any) -> float:
            return -math.inf if age is None else now - float(age) - elapsed

        self._last_start = max(self._last_start, back(history.get("last_start")))
        self._last_listing = max(self._last_listing, back(history.get("last_listing")))
        self._last_all_files = max(self._last_all_files, back(history.get("last_all_files")))
        self._last_user_info = max(self._last_user_info, back(history.get("last_user_info")))
        for key, age in (history.get("folders") or {}).items():
            folder: Hashable = int(key) if str(key).lstrip("-").isdigit() else key
            self._last_folder[folder] = max(self._last_folder.get(folder, -math.inf), back(age))
        left = float(history.get("breaker_open_for") or 0.0) - elapsed
        if left > 0:
            self._tripped = True
            self._open_until = max(self._open_until, now + left)

    def _breaker_state(self, now: float) -> str:
        if not self._tripped:
            return "closed"
        return "open" if now < self._open_until else "half-open"

    def _trip(self, exc: FloodLocked) -> None:
        """Open the breaker after a flood lock (a second lock during one open period is ignored)."""
        now = self._clock()
        self._last_flood = exc
        if self._tripped and now < self._open_until:
            return
        self._consecutive += 1
        self._opens += 1
        self._tripped = True
        b = self.budgets
        duration = min(b.breaker_max, b.breaker_base * 2.0 ** (self._consecutive - 1))
        self._open_until = now + duration
        log.warning("1fichier flood lock (%s): pausing all API calls for %.0f s", exc, duration)
        for job in self._queue:
            job.poke()  # INTERACTIVE waiters re-check their stall limit
        if self.shared is not None and self._nursery is not None:
            self._shared_tripped = True
            self._nursery.start_soon(self._shared_trip)  # every other mount pauses too

    def _api_answered(self) -> None:
        """The API gave a real answer (not a flood lock): close the breaker, reset doubling."""
        if self._tripped:
            log.info("1fichier answered again: API calls resume")
        self._tripped = False
        self._consecutive = 0
        self._unreachable = None

    def _backoff(self, attempt: int) -> float:
        b = self.budgets
        delay = min(b.retry_max, b.retry_base * 2.0 ** (attempt - 1))
        return delay * (0.5 + 0.5 * self._jitter())

    # ------------------------------------------------------------------ dispatcher

    def _wake(self) -> None:
        self._wakeup.set()

    async def _dispatch(self) -> None:
        while True:
            self._wakeup = trio.Event()  # re-armed before looking, so no change is missed
            wait = self._start_next()
            if wait > 0:
                with trio.move_on_after(wait):
                    await self._wakeup.wait()

    def _start_next(self) -> float:
        """Start the next job that may start now; return how long to wait before looking again."""
        if not self._queue or self._running_job is not None or self._shared_busy:
            return math.inf  # woken by call() or by the end of the running job
        now = self._clock()
        gate = self._last_start + self.budgets.min_interval
        if self._tripped:
            gate = max(gate, self._open_until)
        if now < gate:
            return gate - now
        wait = math.inf
        for job in sorted(self._queue, key=lambda j: (j.lane, j.seq)):
            ready = max(job.not_before, self._ready_at(job.endpoint, job.folder))
            if ready <= now:
                self._start(job, now)
                return math.inf
            wait = min(wait, ready - now)
        return wait

    def _start(self, job: _Job, now: float) -> None:
        assert self._nursery is not None
        self._queue.remove(job)
        job.state = _State.RUNNING
        job.attempts += 1
        self._running_job = job
        self._charge(job, now)
        self._calls[job.endpoint] += 1
        job.poke()
        self._nursery.start_soon(self._execute, job)

    async def _execute(self, job: _Job) -> None:
        if self.shared is not None and not await self._shared_acquire(job):
            return
        try:
            result = await job.method(*job.args, **job.kwargs)
        except FloodLocked as exc:
            self._errors[job.endpoint] += 1
            self._running_job = None
            self._trip(exc)
            self._requeue(job, not_before=-math.inf)
        except AuthError as exc:
            self._errors[job.endpoint] += 1
            self._running_job = None
            log.log(exc.level, "%s", api_error_line(exc, job.endpoint, job.attempts))
            self._api_answered()
            self._auth_failed(exc)
            self._finish(job, error=exc)
        except Exception as exc:
            self._errors[job.endpoint] += 1
            self._running_job = None
            if isinstance(exc, ServerError) and not exc.reached_server:
                self._uncharge(job)  # 1fichier never saw it: it costs no budget
                if self._unreachable is None:
                    self._unreachable = (self._clock(), str(exc))
            if isinstance(exc, FichierError) and exc.retryable and job.attempts <= job.retries:
                self._retried += 1
                job.last_error = exc
                delay = self._backoff(job.attempts)
                level = logging.DEBUG if job.attempts == 1 else logging.INFO if job.attempts == 2 else logging.WARNING
                log.log(
                    level, "%s failed (%s); retry %d/%d in %.1f s", job.endpoint, exc, job.attempts, job.retries, delay
                )
                not_before = self._clock() + delay
                for w in job.waiters:  # a back-off is not a wait for the budgets: fresh stall window
                    if w.deadline < math.inf:
                        w.deadline = max(w.deadline, not_before + self.budgets.stall_limit)
                self._requeue(job, not_before=not_before)
            else:
                if isinstance(exc, ApiError):
                    self._api_answered()
                if isinstance(exc, FichierError):  # one line per API error, with 1fichier's code
                    log.log(exc.level, "%s", api_error_line(exc, job.endpoint, job.attempts))
                self._finish(job, error=exc)
        else:
            self._running_job = None
            self._api_answered()
            self._finish(job, result=result)
        finally:
            reached = job.saved_clocks is not None
            if reached:  # it reached 1fichier (a refused connection was given back)
                self._charge_end(job, self._clock())
            if self.shared is not None:
                await self._shared_release(job, reached)
            self._wake()

    # ------------------------------------------------------------------ the other mounts (fichierfs.budget)

    def _rules(self) -> Rules:
        b = self.budgets
        return Rules(b.min_interval, b.listing_interval, b.same_folder_interval, b.all_files_interval,
                     b.user_info_interval, b.breaker_base, b.breaker_max, b.user_info_ip_interval)

    @staticmethod
    def _call_kind(job: _Job) -> CallKind:
        if job.endpoint in LISTINGS:
            if job.endpoint == "file/ls" and job.folder == ALL_FILES:
                return CallKind("all_files")
            return CallKind("listing", job.folder)
        return CallKind("user_info" if job.endpoint == "user/info" else "call")

    def _call_kind_of(self, job: _Job) -> CallKind:
        kind = self._call_kind(job)
        return dataclasses.replace(kind, account=self.share_scope) if kind.kind == "user_info" else kind

    async def _shared_acquire(self, job: _Job) -> bool:
        """Ask the shared budget; if another mount spent it, put the job back (its old place) and say False."""
        assert self.shared is not None
        shares = self._shares_listing(job)
        listing = None
        self._shared_busy = True
        try:
            with trio.CancelScope(shield=True):
                if shares:
                    listing = await recall_listing(self.shared, f"{self.share_scope}/{job.folder}")
                    job.shared_gen = await generation(self.shared) if listing is None else None
                wait = 0.0 if listing is not None else await self.shared.acquire(self._call_kind_of(job), self._rules())
        except Exception:  # noqa: BLE001 - a broken shared store must not stop the mount: go alone
            log.warning("shared API budget failed; this call goes by the local budget", exc_info=True)
            wait, listing = 0.0, None
        finally:
            self._shared_busy = False
        if wait <= 0 and listing is None:
            return True
        self._uncharge(job)
        self._calls[job.endpoint] -= 1
        job.attempts -= 1
        self._running_job = None
        if listing is not None:  # another mount listed this folder a moment ago: its listing serves us
            self._shared_listings += 1
            self._finish(job, result=listing)
        else:
            self._shared_waits += 1
            if shares and wait > 0.3:
                wait = 0.3  # the mount listing it now publishes its listing soon: look again
            self._requeue(job, not_before=max(job.not_before, self._clock() + wait))
        self._wake()
        return False

    @staticmethod
    def _shares_listing(job: _Job) -> bool:
        # coalesce=False (job.key None) asks for 1fichier's answer now: `fichierfs refresh` (meta.py)
        return (job.endpoint == "folder/ls" and bool(job.kwargs.get("files")) and job.folder is not None
                and job.key is not None)

    async def _shared_changed(self) -> None:
        assert self.shared is not None
        try:
            await changed(self.shared)
        except Exception:  # noqa: BLE001
            log.debug("shared change not published", exc_info=True)

    async def _shared_trip(self) -> None:
        assert self.shared is not None
        try:
            await self.shared.trip(self._rules())
        except Exception:  # noqa: BLE001
            log.debug("shared breaker not opened", exc_info=True)

    async def _shared_release(self, job: _Job, reached: bool) -> None:
        assert self.shared is not None
        self._shared_busy = True
        try:
            with trio.CancelScope(shield=True):
                await self.shared.release(self._call_kind_of(job), reached=reached,
                                          refused=isinstance(job.error, AuthError))
                if reached and job.endpoint not in METERED_READ_ONLY:
                    await changed(self.shared)  # listings published before this change are not served
                elif (reached and job.state is _State.DONE and job.error is None and job.shared_gen is not None
                      and self._shares_listing(job)):
                    # served for two folder windows: a mount walking the same tree a little behind
                    # still finds it; far fresher than any mount's own dir_ttl (600 s)
                    await publish_listing(self.shared, f"{self.share_scope}/{job.folder}", job.result, job.shared_gen,
                                          2 * self.budgets.same_folder_interval)
                if reached and self._shared_tripped and job.error is None and job.state is _State.DONE:
                    self._shared_tripped = False
                    await self.shared.answered()
        except Exception:  # noqa: BLE001 - the coordinator's trouble must never fail a call
            log.debug("shared budget release failed", exc_info=True)
        finally:
            self._shared_busy = False

    def _requeue(self, job: _Job, *, not_before: float) -> None:
        """Put a started job back in the queue, at its old place (its seq)."""
        if not job.waiters:
            self._drop(job)
            return
        job.state = _State.QUEUED
        job.not_before = not_before
        self._queue.append(job)
        job.poke()

    def _auth_failed(self, exc: AuthError) -> None:
        log.critical("1fichier refused the API key (%s): no further API calls", exc)
        self._auth_error = exc
        for job in list(self._queue):
            self._finish(job, error=exc)

    # ------------------------------------------------------------------ jobs and waiters

    def _coalescing_key(
        self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], coalesce: bool | None
    ) -> Hashable | None:
        if coalesce and name not in METERED_READ_ONLY:
            raise ValueError(f"{name} is not read-only and never coalesces")
        if coalesce is None:
            coalesce = name in METERED_READ_ONLY and not (name == "download/get_token" and kwargs.get("single"))
        if not coalesce:
            return None
        key = (name, args, tuple(sorted(kwargs.items())))
        try:
            hash(key)
        except TypeError:
            return None
        return key

    async def _wait(self, job: _Job, waiter: _Waiter) -> Any:
        while job.state is not _State.DONE:
            timeout = math.inf
            if waiter.deadline < math.inf and job.state is _State.QUEUED:
                now = self._clock()
                ready = max(job.not_before, self._ready_at(job.endpoint, job.folder))  # not_before: other mounts
                if ready > waiter.deadline or now >= waiter.deadline:
                    raise self._stall_error(job, ready, now)
                timeout = waiter.deadline - now
            changed = job.changed
            with trio.move_on_after(timeout):
                await changed.wait()
        if job.error is not None:
            raise job.error.with_traceback(job.error_tb)
        return job.result

    def _stall_error(self, job: _Job, ready: float, now: float) -> FichierError:
        self._stalled += 1
        if job.last_error is not None and not self._tripped and isinstance(job.last_error, FichierError):
            # the call did start and failed (e.g. connection refused): say that, not "budget spent"
            return job.last_error
        retry_after = max(0.0, ready - now)
        flood = self._last_flood if self._tripped else None
        why = "the API is flood-locked" if flood is not None else "its rate budget is spent"
        exc = FloodLocked(
            f"{job.endpoint} cannot start now: {why}; retry in {retry_after:.0f} s",
            code=flood.code if flood is not None else None,
            endpoint=job.endpoint,
        )
        exc.retry_after = retry_after
        if flood is not None:
            exc.__cause__ = flood
            exc.__suppress_context__ = True
        return exc

    def _withdraw(self, job: _Job, waiter: _Waiter) -> None:
        """A waiter leaves (cancelled, stalled, or done); a queued job nobody waits for goes."""
        if waiter in job.waiters:
            job.waiters.remove(waiter)
        if not job.waiters and job.state is _State.QUEUED:
            self._drop(job)
            self._wake()

    def _drop(self, job: _Job) -> None:
        if job in self._queue:
            self._queue.remove(job)
        if job.key is not None and self._coalesce.get(job.key) is job:
            del self._coalesce[job.key]
        job.state = _State.DONE
        job.poke()

    def _finish(self, job: _Job, *, result: Any = None, error: BaseException | None = None) -> None:
        job.result = result
        job.error = error
        job.error_tb = error.__traceback__ if error is not None else None
        self._drop(job)

    # ------------------------------------------------------------------ unmetered legs

    async def _call_unmetered(
        self,
        name: str,
        method: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        retries: int,
    ) -> T:
        attempt = 0
        while True:
            attempt += 1
            async with self._transfers, self._lease(name):
                self._calls[name] += 1
                try:
                    result = await method(*args, **kwargs)
                    if name == "upload.cgi" and self.shared is not None and self._nursery is not None:
                        self._nursery.start_soon(self._shared_changed)  # a new file in some folder
                    return result
                except FloodLocked as exc:
                    self._errors[name] += 1
                    self._trip(exc)
                    raise
                except Exception as exc:
                    self._errors[name] += 1
                    if not (isinstance(exc, FichierError) and exc.retryable and attempt <= retries):
                        raise
                    delay = self._backoff(attempt)
                    self._retried += 1
                    log.log(
                        logging.DEBUG if attempt == 1 else logging.INFO,
                        "%s failed (%s); retry in %.1f s",
                        name,
                        exc,
                        delay,
                    )
            await trio.sleep(delay)

    def _lease(self, name: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Downloads hold the shared one-location lease (§3 #887); other legs need nothing."""
        if name == "download" and self.shared is not None:
            return self.shared.download_lease(self.budgets.location_window)
        return contextlib.nullcontext()

    def _prune_recent(self, now: float) -> None:
        while self._recent and self._recent[0] <= now - 60.0:
            self._recent.popleft()
