"""The shared budget on Redis/Valkey (``--coordinator redis://HOST:PORT/DB``), via coredis.

Every decision is one server-side Lua script, so two hosts can never both take the last slot:
the script reads the clocks, compares them with the server's own ``TIME`` (hosts need no
synchronised clocks) and charges them in the same atomic step. Keys (``fichierfs:<ns>:…``,
``ns`` = API URL + account fingerprint) expire once their rule has lapsed.

Downloads: §3 "Only 1 location allowed at a time #887". :meth:`RedisBudget.download_lease`
is a fair, expiring lease: the holder renews it while it downloads; a host that wants it joins
a queue (arrival order) and gets it when the holder lets go or its lease expires (a crashed
host holds it at most ``lease_ttl``); a holder that has had it for ``fair_hold`` seconds
while others wait lets go after its current transfers, so hosts take turns.

Coordinator gone: any Redis error (or an answer slower than ``timeout``) switches to a
conservative local budget (every interval × ``fallback_scale``, every folder and user/info
treated as just used), logs a WARNING, shows ``"state": "fallback"`` in :meth:`status`, and
tries Redis again every ``retry_every`` seconds; the first success logs that it rejoined.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import trio
from coredis.tokens import PureToken

from fichierfs.budget import CallKind, MemoryBudget, Rules, _interval
from fichierfs.errors import ConfigError

__all__ = ["RedisBudget", "redis_password", "safe_url"]

log = logging.getLogger(__name__)

_NOW = "local t = redis.call('TIME'); local now = tonumber(t[1]) + tonumber(t[2]) / 1000000\n"
_NUM = "local function num(k) local v = redis.call('GET', k); if v then return tonumber(v) end; return nil end\n"

# KEYS[1] breaker_until, KEYS[2..] clocks; ARGV intervals of KEYS[2..]. → {"0" | wait, charged_at, saved…}
_ACQUIRE = _NOW + _NUM + """
local ready = num(KEYS[1]) or 0
for i = 2, #KEYS do
  local v = num(KEYS[i])
  if v then ready = math.max(ready, v + tonumber(ARGV[i - 1])) end
end
if ready > now then return {string.format('%.6f', ready - now)} end
local out = {'0', string.format('%.6f', now)}
for i = 2, #KEYS do
  out[#out + 1] = redis.call('GET', KEYS[i]) or ''
  redis.call('SET', KEYS[i], string.format('%.6f', now), 'PX', math.ceil((tonumber(ARGV[i - 1]) + 60) * 1000))
end
return out
"""

# KEYS clocks; ARGV[1] reached 1/0, ARGV[2] charged_at, then (interval, saved) per key
_RELEASE = _NOW + _NUM + """
for i = 1, #KEYS do
  local interval = tonumber(ARGV[1 + 2 * i])
  local saved = ARGV[2 + 2 * i]
  local px = math.ceil((interval + 60) * 1000)
  if ARGV[1] == '1' then
    local v = num(KEYS[i]) or 0
    if now > v then redis.call('SET', KEYS[i], string.format('%.6f', now), 'PX', px) end
  elseif redis.call('GET', KEYS[i]) == ARGV[2] then
    if saved == '' then redis.call('DEL', KEYS[i]) else redis.call('SET', KEYS[i], saved, 'PX', px) end
  end
end
return 1
"""

# KEYS breaker_until, breaker_n, opens; ARGV base, max → seconds open
_TRIP = _NOW + _NUM + """
local untl = num(KEYS[1]) or 0
if untl > now then return string.format('%.6f', untl - now) end
local n = (num(KEYS[2]) or 0) + 1
local d = math.min(tonumber(ARGV[2]), tonumber(ARGV[1]) * 2 ^ (n - 1))
redis.call('SET', KEYS[1], string.format('%.6f', now + d), 'PX', math.ceil((d + 60) * 1000))
redis.call('SET', KEYS[2], n, 'EX', 7200)
redis.call('INCR', KEYS[3])
return string.format('%.6f', d)
"""

# KEYS lease, queue (zset arrival), heartbeats (zset), since; ARGV me, ttl_ms, fair_hold_s, "take"/"renew"
# → {held 1/0, ms to wait, others waiting}. A holder that has had it fair_hold s while others wait
# may finish (renew) but not take it again: the first waiter gets it when it lapses.
_LEASE = _NOW + """
local me, ttl, proc = ARGV[1], tonumber(ARGV[2]), ARGV[5]
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - ttl / 1000)
for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if not redis.call('ZSCORE', KEYS[3], m) then redis.call('ZREM', KEYS[2], m) end
end
local cur = redis.call('GET', KEYS[1])
local waiting = redis.call('ZCARD', KEYS[2])
if cur == me then
  local since = tonumber(redis.call('GET', KEYS[4]) or '0')
  if ARGV[4] == 'take' and waiting > 0 and now - since > tonumber(ARGV[3]) then
    local left = redis.call('PTTL', KEYS[1])
    if left < 0 then left = 50 end
    return {0, math.min(left, 200), waiting}
  end
  if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
  redis.call('ZADD', KEYS[5], now, proc); redis.call('PEXPIRE', KEYS[5], ttl * 10)
  return {1, 0, waiting}
end
local first = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
if (not cur) and (not first or first == me) then
  redis.call('SET', KEYS[1], me, 'PX', ttl)
  redis.call('SET', KEYS[4], string.format('%.6f', now), 'PX', ttl * 100)
  redis.call('ZREM', KEYS[2], me); redis.call('ZREM', KEYS[3], me)
  redis.call('DEL', KEYS[5]); redis.call('ZADD', KEYS[5], now, proc); redis.call('PEXPIRE', KEYS[5], ttl * 10)
  return {1, 0, waiting}
end
redis.call('ZADD', KEYS[2], 'NX', now, me)
redis.call('ZADD', KEYS[3], now, me)
local left = redis.call('PTTL', KEYS[1])
if left < 0 then left = 50 end
return {0, math.min(left, 200), waiting}
"""

# KEYS lease, members; ARGV location, process, hold_ms, ttl_ms → only our location's lease; the last of
# its processes to finish keeps it hold_ms more (the location stays ours) or deletes it
_UNLEASE = _NOW + """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[4]) / 1000)
if redis.call('ZCARD', KEYS[2]) > 0 then return 1 end
if tonumber(ARGV[3]) > 0 then return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3]) end
return redis.call('DEL', KEYS[1])
"""


def safe_url(url: str) -> str:
    """The URL without user info, for logs and status."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def redis_password(password_file: Path | None) -> str | None:
    """The coordinator's password: ``--coordinator-password-file`` or ``$FICHIERFS_REDIS_PASSWORD``.

    Raises:
        ConfigError: the file is unreadable or readable by group/others.
    """
    if password_file is not None:
        try:
            st = password_file.stat()
            if st.st_mode & 0o077:
                raise ConfigError(f"{password_file} must not be readable by group or others (chmod 600)")
            return password_file.read_text().strip() or None
        except OSError as exc:
            raise ConfigError(f"cannot read the coordinator password file {password_file}: {exc.strerror}") from None
    return os.environ.get("FICHIERFS_REDIS_PASSWORD") or None


class RedisBudget:
    """:class:`~fichierfs.budget.SharedBudget` on Redis; use ``async with RedisBudget.connect(...)``."""

    kind = "redis"

    def __init__(self, client: Any, url: str, ns: str, *, clock: Callable[[], float] = time.time,
                 timeout: float = 1.0, retry_every: float = 2.0, fallback_scale: float = 4.0,
                 lease_ttl: float = 10.0, fair_hold: float = 5.0, location: str | None = None) -> None:
        self._client = client
        self.url = safe_url(url)
        self._prefix = f"fichierfs:{ns}:"
        self._clock = clock
        self._timeout = timeout
        self._retry_every = retry_every
        self._fallback_scale = fallback_scale
        self._lease_ttl = lease_ttl
        self._fair_hold = fair_hold
        self._me = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # §3 #887 counts client addresses: the mounts of one host (one address) share the lease
        self._location = location or os.uname().nodename
        self._scripts = {name: client.register_script(src) for name, src in
                         (("acquire", _ACQUIRE), ("release", _RELEASE), ("trip", _TRIP), ("lease", _LEASE),
                          ("unlease", _UNLEASE))}
        self._fallback: MemoryBudget | None = None
        self._retry_at = -math.inf
        self._charged: tuple[str, str, list[str]] = ("redis", "", [])  # who charged, charged_at, saved
        self._waits = 0
        self._trips = 0
        self._fallbacks = 0
        self._round_trips = 0
        self._round_trip_time = 0.0
        # download lease: held by this process while ≥ 1 transfer runs
        self._lease_users = 0
        self._lease_held = False
        self._lease_since = 0.0
        self._lease_others = 0
        self._lease_changed = trio.Event()
        self._lease_waits = 0
        self._other_seen = -math.inf  # when a lease answer last said another location holds it
        self._unguarded = 0  # downloads started while the coordinator was unreachable

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, url: str, ns: str, *, password: str | None = None, **kw: Any) -> AsyncIterator[RedisBudget]:
        """Open the client: an unreachable server means fallback, not failure; a refused password
        (missing or wrong) is a ConfigError."""
        import coredis
        from coredis.exceptions import AuthenticationError, AuthorizationError
        from coredis.retry import NoRetryPolicy

        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ConfigError(f"coordinator must be redis://HOST:PORT[/DB] or rediss://…, not {safe_url(url)!r}")
        if parts.password:
            raise ConfigError("do not put the coordinator password in the URL (it would show in ps): "
                              "use --coordinator-password-file or $FICHIERFS_REDIS_PASSWORD")
        client = coredis.Redis.from_url(url, password=password, connect_timeout=kw.pop("connect_timeout", 1.0),
                                        stream_timeout=kw.pop("stream_timeout", 2.0),
                                        retry_policy=NoRetryPolicy(), decode_responses=True)
        refused: ConfigError | None = None
        async with client:
            budget = cls(client, url, ns, **kw)
            try:  # a missing or wrong password is the user's mistake to fix, not an outage to ride out
                with trio.fail_after(budget._timeout):
                    await client.ping()
            except (AuthenticationError, AuthorizationError) as exc:
                refused = ConfigError(f"coordinator {safe_url(url)} refused this mount ({type(exc).__name__}: "
                                      f"{exc}); its password goes in --coordinator-password-file FILE (chmod 600) "
                                      "or $FICHIERFS_REDIS_PASSWORD")
            except Exception as exc:  # noqa: BLE001 - unreachable: the local fallback budget, as for any call
                budget._go_local(exc)
            if refused is None:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(budget._renew_lease)
                    nursery.start_soon(budget._rejoin)
                    try:
                        yield budget
                    finally:
                        nursery.cancel_scope.cancel()
                        with trio.move_on_after(1.0) as scope:
                            scope.shield = True
                            await budget._drop_lease()
        if refused is not None:  # raised out here: coredis's own nursery would wrap it in a group
            raise refused

    # ------------------------------------------------------------------ plumbing
    def _key(self, name: str) -> str:
        return self._prefix + name

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run one script; None when Redis is unreachable (and fallback is on)."""
        now = self._clock()
        if self._fallback is not None and now < self._retry_at:
            return None
        t0 = time.perf_counter()
        try:
            with trio.fail_after(self._timeout):
                result = await self._scripts[name](keys=keys, args=args)
        except Exception as exc:  # noqa: BLE001 - any failure of the coordinator means: go local
            self._go_local(exc)
            return None
        self._round_trips += 1
        self._round_trip_time += time.perf_counter() - t0
        if self._fallback is not None:
            log.warning("coordinator %s is back: the API budget is shared again", self.url)
            self._fallback = None
        return result

    async def _rejoin(self) -> None:
        """While on the local budget, look for the coordinator every ``retry_every`` s, even when idle."""
        while True:
            await trio.sleep(self._retry_every)
            if self._fallback is None:
                continue
            try:
                with trio.fail_after(self._timeout):
                    await self._client.ping()
            except Exception as exc:  # noqa: BLE001
                self._go_local(exc)
                continue
            log.warning("coordinator %s is back: the API budget is shared again", self.url)
            self._fallback = None

    def _go_local(self, exc: BaseException) -> None:
        now = self._clock()
        self._retry_at = now + self._retry_every
        if self._fallback is None:
            self._fallbacks += 1
            why = type(exc).__name__ + (f": {exc}" if str(exc) else "")
            log.warning("coordinator %s unreachable (%s): conservative local API budget (intervals x%g) "
                        "until it is back", self.url, why, self._fallback_scale)
            self._fallback = MemoryBudget(self._clock, scale=self._fallback_scale, start=now, folders_listed_at=now)

    # ------------------------------------------------------------------ SharedBudget
    async def acquire(self, call: CallKind, rules: Rules) -> float:
        clocks = call.clocks()
        keys = [self._key("breaker_until"), *(self._key(c) for c in clocks)]
        res = await self._script("acquire", keys, [repr(_interval(rules, c)) for c in clocks])
        if res is None:
            assert self._fallback is not None
            wait = await self._fallback.acquire(call, rules)
            if wait == 0:
                self._charged = ("local", "", [])
            return wait
        if res[0] != "0":
            self._waits += 1
            return max(float(res[0]), 1e-3)
        self._charged = ("redis", res[1], list(res[2:]))
        return 0.0

    async def release(self, call: CallKind, *, reached: bool, refused: bool = False) -> None:
        who, at, saved = self._charged
        if who == "local":
            if self._fallback is not None:
                await self._fallback.release(call, reached=reached, refused=refused)
            return
        rules = Rules()
        back = call.per_user() if refused else []
        for want in (True, False):  # the clocks moved to the end, then those given back (a refused key's)
            pairs = [(c, s) for c, s in zip(call.clocks(), saved, strict=False)
                     if (reached and c not in back) == want]
            if not pairs:
                continue
            args: list[Any] = ["1" if want else "0", at]
            for c, s in pairs:
                args += [repr(_interval(rules, c)), s]
            await self._script("release", [self._key(c) for c, _ in pairs], args)

    async def trip(self, rules: Rules) -> float:
        self._trips += 1
        res = await self._script("trip", [self._key("breaker_until"), self._key("breaker_n"),
                                          self._key("breaker_opens")], [repr(rules.breaker_base),
                                                                          repr(rules.breaker_max)])
        if res is None:
            assert self._fallback is not None
            return await self._fallback.trip(rules)
        return float(res)

    async def answered(self) -> None:
        if self._fallback is not None:
            await self._fallback.answered()
            return
        try:
            with trio.fail_after(self._timeout):
                await self._client.set(self._key("breaker_n"), "0", ex=7200)
        except Exception as exc:  # noqa: BLE001
            self._go_local(exc)

    async def history(self) -> dict[str, Any]:
        return {}  # the clocks live on the server; acquire() sees them

    # ------------------------------------------------------------------ download lease (§3 #887)
    @contextlib.asynccontextmanager
    async def download_lease(self, hold_after: float = 0.0) -> AsyncIterator[None]:
        await self._take_lease(hold_after)
        self._lease_users += 1
        try:
            yield
        finally:
            self._lease_users -= 1
            if self._lease_users == 0:
                with trio.move_on_after(1.0) as scope:
                    scope.shield = True
                    await self._drop_lease(hold_after)

    def _must_yield(self) -> bool:
        return self._lease_others > 0 and self._clock() - self._lease_since > self._fair_hold

    async def _take_lease(self, hold_after: float = 0.0) -> None:
        waited = False
        while True:
            if self._lease_held and not self._must_yield():
                return
            if self._lease_held:  # turn over: new transfers wait until this host lets go
                waited = True
                ev = self._lease_changed
                await ev.wait()
                continue
            res = await self._script("lease", self._lease_keys(),
                                     [self._location, int(self._lease_ttl * 1000), repr(self._fair_hold), "take",
                                      self._me])
            if res is None:
                # no coordinator: nobody can tell us who downloads. If another location held the
                # lease when we last heard, let its lease and window run out first; then go ahead
                # (the scheduler waits out a "#887" refusal and retries: Scheduler._located)
                until = self._other_seen + self._lease_ttl + hold_after
                if self._clock() < until:
                    self._lease_waits += 1
                    await trio.sleep(until - self._clock())
                self._unguarded += 1
                return
            held, wait_ms, others = int(res[0]), int(res[1]), int(res[2])
            if not held:
                self._other_seen = self._clock()
            self._lease_others = others
            if held:
                if not self._lease_held:
                    self._lease_since = self._clock()
                self._lease_held = True
                if waited:
                    self._lease_waits += 1
                return
            waited = True
            await trio.sleep(max(wait_ms, 20) / 1000)

    async def _drop_lease(self, hold_after: float = 0.0) -> None:
        if not self._lease_held:
            return
        self._lease_held = False
        ev, self._lease_changed = self._lease_changed, trio.Event()
        ev.set()
        await self._script("unlease", [self._key("dl"), self._key("dl_members")],
                           [self._location, self._me, int(hold_after * 1000), int(self._lease_ttl * 1000)])

    def _lease_keys(self) -> list[str]:
        return [self._key("dl"), self._key("dlq"), self._key("dlhb"), self._key("dl_since"), self._key("dl_members")]

    async def _renew_lease(self) -> None:
        while True:
            await trio.sleep(self._lease_ttl / 3)
            if self._lease_held:
                if self._lease_users == 0 or self._must_yield() and self._lease_users == 0:
                    await self._drop_lease()
                    continue
                res = await self._script("lease", self._lease_keys(),
                                         [self._location, int(self._lease_ttl * 1000), repr(self._fair_hold), "renew",
                                          self._me])
                if res is not None:
                    self._lease_others = int(res[2])

    async def remember(self, key: str, value: Any, ttl: float) -> None:
        if self._fallback is not None:
            return
        try:
            with trio.fail_after(self._timeout):
                await self._client.set(self._key("memo:" + key), json.dumps(value), px=max(1, int(ttl * 1000)))
        except Exception as exc:  # noqa: BLE001
            self._go_local(exc)

    async def recall(self, key: str) -> Any | None:
        if self._fallback is not None and self._clock() < self._retry_at:
            return None
        try:
            with trio.fail_after(self._timeout):
                text = await self._client.get(self._key("memo:" + key))
        except Exception as exc:  # noqa: BLE001
            self._go_local(exc)
            return None
        return None if text is None else json.loads(text)

    async def publish_attrs(self, changes: Mapping[str, Mapping[str, int | None]]) -> None:
        if self._fallback is not None or not changes:
            return  # while the coordinator is gone, attributes stay local (kept in the journal)
        try:
            with trio.fail_after(self._timeout):
                for k, v in changes.items():
                    await self._client.xadd(self._key("attrs"), {"o": self._me, "k": k, "v": json.dumps(dict(v))},
                                            trim_strategy=PureToken.MAXLEN, threshold=100000,
                                            trim_operator=PureToken.APPROXIMATELY)
        except Exception as exc:  # noqa: BLE001
            self._go_local(exc)

    async def attrs_since(self, cursor: str) -> tuple[str, list[tuple[str, dict[str, int | None]]]]:
        if self._fallback is not None:
            return cursor, []
        try:
            with trio.fail_after(self._timeout):
                got = await self._client.xread({self._key("attrs"): cursor or "0-0"}, count=5000)
        except Exception as exc:  # noqa: BLE001
            self._go_local(exc)
            return cursor, []
        out: list[tuple[str, dict[str, int | None]]] = []
        for entries in (got or {}).values():
            for entry in entries:
                cursor = str(entry.identifier)
                f = entry.field_values
                if f.get("o") != self._me:
                    out.append((str(f["k"]), json.loads(f["v"])))
        return cursor, out

    async def publish_feed(self, feed: str, items: Sequence[Mapping[str, Any]]) -> None:
        if self._fallback is not None or not items:
            return  # while the coordinator is gone, the other mounts re-list when their listing ages
        try:
            with trio.fail_after(self._timeout):
                for item in items:
                    await self._client.xadd(self._key("feed:" + feed), {"o": self._me, "v": json.dumps(dict(item))},
                                            trim_strategy=PureToken.MAXLEN, threshold=20000,
                                            trim_operator=PureToken.APPROXIMATELY)
        except Exception as exc:  # noqa: BLE001
            self._go_local(exc)

    async def feed_since(self, feed: str, cursor: str) -> tuple[str, list[dict[str, Any]]]:
        if self._fallback is not None:
            return cursor, []
        key = self._key("feed:" + feed)
        try:
            with trio.fail_after(self._timeout):
                if not cursor:
                    last = await self._client.xrevrange(key, count=1)
                    return (str(last[0].identifier) if last else "0-0"), []
                got = await self._client.xread({key: cursor}, count=5000)
        except Exception as exc:  # noqa: BLE001
            self._go_local(exc)
            return cursor, []
        out: list[dict[str, Any]] = []
        for entries in (got or {}).values():
            for entry in entries:
                cursor = str(entry.identifier)
                if entry.field_values.get("o") != self._me:
                    out.append(json.loads(entry.field_values["v"]))
        return cursor, out

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        rt = self._round_trip_time / self._round_trips if self._round_trips else 0.0
        return {
            "kind": self.kind,
            "url": self.url,
            "state": "fallback" if self._fallback is not None else "ok",
            "fallbacks": self._fallbacks,
            "shared_waits": self._waits,
            "shared_trips": self._trips,
            "round_trips": self._round_trips,
            "round_trip_ms": round(rt * 1000, 3),
            "download_lease": ("unguarded: coordinator down, a #887 refusal is waited out" if self._fallback is not None
                               else "held" if self._lease_held else "free"),
            "unguarded_downloads": self._unguarded,
            "download_lease_waits": self._lease_waits,
        }

    async def aclose(self) -> None:
        await self._drop_lease()
