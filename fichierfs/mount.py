"""Mount lifecycle: lock the store, build the core, run pyfuse3 in one nursery.

``run_mount`` is what ``fichierfs mount -f`` runs. Order of start-up:

1. the cache is made private (umask 077; an older world-readable tree is tightened); the account
   behind the key is identified (:func:`fichierfs.account.identify`: from the key registry, or one
   ``user/info`` for a key never seen before); the store directory of this account and folder
   (``Options.store_dir``) is locked — a second mount of the same account and folder would share
   its journal — and other journals with pending work are reported (``--adopt-journal`` takes
   one over);
2. the kernel notifier (pyfuse3 invalidations) starts;
3. :func:`fichierfs.core.build_core` assembles and starts the core exactly as the in-process
   tests do: client → scheduler (budgets scaled by ``--budget-scale``, rate history of the
   previous mount) → meta, reader, journal + write-back (replayed: pending uploads, deletes,
   moves of an earlier mount start right away, in the background: they never hold the mount
   up, rclone #2364) → Filesystem. The root folder (``--remote-folder``) is resolved and
   listed BEFORE the kernel mount, so a wrong key or a missing folder fails the mount with a
   clear message instead of giving an empty drive (the first ``ls`` needs that listing anyway);
4. the pyfuse3 adapter (:class:`~fichierfs.ops.Operations`), ``pyfuse3.init`` and
   ``pyfuse3.main`` in the same nursery as the background tasks.

A plain unmount with changes not uploaded yet keeps them in the journal for the next mount
and logs how many there are (``fichierfs umount --wait`` waits for them instead).

It ends when the file system is unmounted (``fichierfs umount`` / ``fusermount3 -u``) or on
SIGTERM/SIGINT (then it unmounts itself).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import pyfuse3
import trio

from fichierfs.account import (
    Identity,
    identify,
    known_accounts,
    legacy_key_account,
    other_journals,
    pending_in,
    registered_account,
    write_origin,
)
from fichierfs.api import FichierClient, Secret
from fichierfs.budget import HostBudget, SharedBudget, host_budget_path, namespace
from fichierfs.config import Options
from fichierfs.core import HTTP_TIMEOUT, budgets_from, build_core, load_history, save_history
from fichierfs.errors import ConfigError
from fichierfs.ops import Operations, PyfuseNotifier
from fichierfs.private import open_private, private_dir, restrict_umask, tighten
from fichierfs.scheduler import Scheduler

__all__ = ["run_mount", "fuse_options"]

log = logging.getLogger(__name__)


def fuse_options(options: Options) -> set[str]:
    """The libfuse mount options for ``options`` (fsname, subtype, ro, allow_other)."""
    opts = set(pyfuse3.default_options)
    opts.discard("default_permissions")
    opts |= {f"fsname={options.fsname}", "subtype=fichierfs", "noatime", "default_permissions"}
    if options.read_only:
        opts.add("ro")
    if options.allow_other:
        opts.add("allow_other")
    return opts


async def run_mount(
    options: Options,
    mountpoint: Path,
    api_key: Secret,
    ready: Callable[[], None] = lambda: None,
    say: Callable[[str], None] = lambda text: None,
) -> None:
    """Mount and serve until unmounted or signalled.

    Args:
        options: every tunable.
        mountpoint: an existing empty directory.
        api_key: the account's key (never logged).
        ready: called once the kernel mount is live (the CLI's background parent waits for it).
        say: tells the person running ``fichierfs mount`` something before the mount is live
            (what a long step waits for, journals left with pending work); also logged.

    Raises:
        FichierError subclasses (AuthError for a bad key, NoEntry for a missing remote
        folder) before the kernel mount; nothing after it except bugs.
    """
    root = options.cache_root()
    restrict_umask()
    private_dir(root)
    if n := tighten(root):
        log.warning("%d entries of the cache %s were readable by others: now 0700/0600", n, root)
    ident = await _identify(options, api_key, root, say)
    store_dir = options.store_dir(ident.account)
    _migrate_legacy(options.store_dir(legacy_key_account(api_key)), store_dir)
    _lock_store(store_dir, mountpoint)
    if options.adopt_journal is not None:
        _adopt(Path(options.adopt_journal), store_dir, say)
    write_origin(store_dir, options.api_url, options.remote_folder, ident.account)
    for j in other_journals(root, store_dir, ident.account):
        say(f"WARNING: the journal {j.describe()} is not this mount's and nothing uploads it. "
            f"To upload it here: fichierfs umount {mountpoint}; fichierfs mount --adopt-journal {j.path} "
            f"... {mountpoint} (or mount again with the API address it was written for)")
    history = _history_path(root, options.api_url, ident.account)
    notifier = PyfuseNotifier()
    async with trio.open_nursery() as nursery, contextlib.AsyncExitStack() as stack:
        await nursery.start(notifier.run)
        shared = await _shared_budget(options, ident.account, stack)
        async with build_core(
            options, None, api_key, store_dir=store_dir, notifier=notifier,
            history=history if shared is None else None,  # the shared store is the history
            shared=shared, account=ident.account, say=say,
        ) as core:
            core.fs.status_sources["daemon"] = lambda: {"pid": os.getpid()}
            if ident.info is not None:  # the identifying user/info also answers the first df (1 per 5 min, §4)
                core.fs.remember_quota(ident.info)
                if shared is not None:  # ... and the other mounts' df
                    quota = {"total": max(ident.info.total, 1), "free": ident.info.free}
                    await shared.remember("quota", quota, options.statfs_ttl)
            ops = Operations(core.fs, entry_timeout=options.entry_timeout, attr_timeout=options.attr_timeout,
                             negative_timeout=options.negative_timeout)
            real_mountpoint = os.path.realpath(mountpoint)  # noqa: ASYNC240 - before the mount: never stat our own
            pyfuse3.init(ops, str(mountpoint), fuse_options(options))
            nursery.start_soon(_raise_readahead_after_init, ops.initialized, mountpoint, options.kernel_readahead)
            unmounted_by_us = False
            try:
                nursery.start_soon(_signals, nursery.cancel_scope)
                log.info("mounted %s on %s", options.remote_folder, mountpoint)
                ready()
                # pyfuse3.main() returns only when every request handler has returned, and a
                # handler may wait minutes for the API budget (a listing, user/info): after an
                # unmount, cancel them instead of keeping the daemon (and its journal lock) alive
                with trio.CancelScope() as main_scope:
                    nursery.start_soon(_watch_unmount, real_mountpoint, main_scope)
                    await pyfuse3.main()
                if main_scope.cancelled_caught:
                    log.info("%s was unmounted; requests still waiting for the API were cancelled", mountpoint)
                else:
                    log.info("%s was unmounted", mountpoint)
            except BaseException:
                unmounted_by_us = True
                raise
            finally:
                pyfuse3.close(unmount=unmounted_by_us)
        nursery.cancel_scope.cancel()


async def _shared_budget(options: Options, account: str, stack: contextlib.AsyncExitStack) -> SharedBudget | None:
    """The API budget shared with the other mounts of the account (``--coordinator``); None for ``none``."""
    if options.coordinator == "none":
        return None
    if options.coordinator == "host":
        # per API URL (per-IP limits), with this account's user/info clock (per-user limit)
        host = HostBudget(host_budget_path(), namespace(options.api_url), account=account)
        stack.push_async_callback(host.aclose)
        return host
    from fichierfs.budget_redis import RedisBudget, redis_password

    password = redis_password(options.coordinator_password_file)
    return await stack.enter_async_context(
        RedisBudget.connect(options.coordinator, namespace(options.api_url, account), password=password,
                            location=f"{os.uname().nodename}/{options.source_address or ''}")
    )


def _history_path(root: Path, api_url: str, account: str) -> Path:
    """The API budget clocks of one account at one API address (see core.load_history)."""
    return root / f"rate-{hashlib.sha256((api_url + account).encode()).hexdigest()[:16]}.json"


async def _identify(options: Options, api_key: Secret, root: Path, say: Callable[[str], None]) -> Identity:
    """The account behind ``api_key`` (see :mod:`fichierfs.account`).

    A key never seen before costs one ``user/info``, made by a short-lived scheduler that first
    loads the budget clocks of every account seen at this API address (a rotated key opens an
    account whose last user/info may be minutes old: 1 per 5 min, §4), and whose clocks are then
    saved as the account's, so that the mount's own scheduler honours them.
    """
    known = registered_account(root, options.api_url, api_key)
    if known is not None:
        return Identity(known)
    host = HostBudget(host_budget_path(), namespace(options.api_url)) if options.coordinator != "none" else None
    # another mount of this host (another --cache-dir) may know this key's account: no user/info then
    memo = "account:" + hashlib.sha256(f"{options.api_url}\0{api_key.reveal()}".encode()).hexdigest()
    if host is not None and isinstance(account := await host.recall(memo), str):
        await host.aclose()
        return Identity(account)
    seen = known_accounts(root) | {legacy_key_account(api_key)}
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, follow_redirects=False) as http:
        client = FichierClient(http, api_key, base_url=options.api_url)
        scheduler = Scheduler(client, budgets_from(options))
        scheduler.shared = host  # the other mounts of this host may have asked user/info a moment ago
        if host is not None:  # their clocks too, so that a wait for user/info is announced (say)
            scheduler.import_history(await host.history(), 0.0)
        async with trio.open_nursery() as nursery:
            await nursery.start(scheduler.run)
            for account in sorted(seen):
                load_history(scheduler, _history_path(root, options.api_url, account))
            try:
                ident = await identify(scheduler, options.api_url, api_key, root, say)
            finally:
                nursery.cancel_scope.cancel()
        if host is not None:
            await host.remember(memo, ident.account, 30 * 86400.0)
            await host.aclose()
    save_history(scheduler, _history_path(root, options.api_url, ident.account))
    return ident


def _migrate_legacy(legacy: Path, store_dir: Path) -> None:
    """A journal of fichierfs 0.1 (keyed by the key) becomes this account's, if it has none yet."""
    if legacy == store_dir or not (legacy / "store.db").exists() or (store_dir / "store.db").exists():
        return
    try:
        if store_dir.exists():
            store_dir.rmdir()  # only an empty leftover (a lock file would make this fail: keep both then)
        os.rename(legacy, store_dir)
        log.info("journal %s moved to %s (journals are now keyed by the account, not the key)", legacy, store_dir)
    except OSError as exc:
        log.warning("journal %s could not be moved to %s: %s", legacy, store_dir, exc)


_JOURNAL_PARTS = ("store.db", "store.db-wal", "store.db-shm", "staging", "clean")


def _adopt(other: Path, store_dir: Path, say: Callable[[str], None]) -> None:
    """``--adopt-journal``: take ``other``'s journal and staged files, if this mount's journal is empty.

    Raises:
        ConfigError: ``other`` is no journal, is in use, or both journals hold pending work.
    """
    other = other.expanduser().resolve()
    if other == store_dir.resolve():
        return
    if not (other / "store.db").is_file():
        raise ConfigError(f"--adopt-journal {other}: no journal there (store.db missing)")
    mine = pending_in(store_dir / "store.db") if (store_dir / "store.db").exists() else 0
    if mine:
        raise ConfigError(f"--adopt-journal {other}: this mount's journal {store_dir} has {mine} pending change(s) "
                          "of its own; let them upload first ('fichierfs sync'), then adopt")
    fd = os.open(other / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError(f"--adopt-journal {other}: in use by a running fichierfs mount") from None
        n = pending_in(other / "store.db")
        for part in _JOURNAL_PARTS:
            target = store_dir / part
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            if (other / part).exists():
                os.rename(other / part, target)
    finally:
        os.close(fd)
    shutil.rmtree(other, ignore_errors=True)
    say(f"adopted the journal {other}: {n} pending change(s) resume here")


_LOCKS: list[int] = []


async def _raise_readahead_after_init(initialized: trio.Event, mountpoint: Path, nbytes: int) -> None:
    """:func:`_raise_readahead` once the kernel has the answer to FUSE_INIT: the kernel sets the mount's
    read-ahead to the smaller of its own and the INIT reply's ``max_readahead`` (its default, 128 KiB) when it
    gets that reply, which comes only once ``pyfuse3.main`` runs; raised before, it was silently reset
    (measured: every FUSE read was 128 KiB)."""
    await initialized.wait()
    await trio.sleep(0.05)  # the reply is written in the same libfuse call as init(); a margin all the same
    _raise_readahead(mountpoint, nbytes)


def _raise_readahead(mountpoint: Path, nbytes: int) -> None:
    """Raise the kernel's read-ahead of this mount (the FUSE bdi's ``read_ahead_kb``, 128 KiB by default) so that
    sequential reads reach the daemon as 1 MiB requests instead of 128 KiB ones: 8× fewer round trips through
    pyfuse3 (measured on the loopback: 231 → 329 MiB/s). Needs root; otherwise the kernel default stays."""
    if nbytes <= 0:
        return
    target = os.path.abspath(mountpoint)  # no stat: a FUSE request to ourselves would deadlock here
    try:
        with open("/proc/self/mountinfo") as f:
            dev = next((p[2] for p in (line.split() for line in f) if p[4] == target), None)
        if dev is None:
            return
        with open(f"/sys/class/bdi/{dev}/read_ahead_kb", "w") as f:
            f.write(str(max(4, nbytes // 1024)))
        log.debug("kernel read-ahead of %s set to %d KiB", mountpoint, nbytes // 1024)
    except OSError as exc:
        log.debug("kernel read-ahead of %s left at its default: %s", mountpoint, exc)


def _lock_store(store_dir: Path, mountpoint: Path | None = None) -> int:
    """Refuse a second mount of the same account and folder (they would share one journal).

    The lock file names the holder (pid and mount point), so the refusal can say which mount it is.
    Returns the locked fd (kept open for the life of the process).

    Raises:
        ConfigError: another live fichierfs process holds the lock.
    """
    private_dir(store_dir)
    fd = open_private(store_dir / "lock")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        os.close(fd)
        pid, _, where = holder.partition(" ")
        who = f" (pid {pid}, mounted on {where})" if pid.isdigit() and where else ""
        raise ConfigError(f"{store_dir} is in use by another fichierfs mount of the same account and folder"
                          f"{who}: unmount it first (fichierfs umount MOUNTPOINT)") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {os.path.abspath(mountpoint) if mountpoint else '?'}\n".encode(), 0)
    _LOCKS.append(fd)
    return fd


async def _watch_unmount(real_mountpoint: str, scope: trio.CancelScope, period: float = 0.5) -> None:
    """Cancel ``scope`` (pyfuse3.main) once ``real_mountpoint`` has left the mount table.

    Reads /proc/self/mounts only: the daemon must never stat its own mount point (a request
    to itself from the thread that answers requests would deadlock).
    """
    while True:
        await trio.sleep(period)
        if not _in_mount_table(real_mountpoint):
            scope.cancel()
            return


def _in_mount_table(real_path: str) -> bool:
    """True if the (already resolved) ``real_path`` is a mount point in /proc/self/mounts."""
    escaped = real_path.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011")
    try:
        with open("/proc/self/mounts") as f:
            return any(len(p) > 1 and p[1] == escaped for p in (line.split() for line in f))
    except OSError:
        return True


async def _signals(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as sigs:
        async for sig in sigs:
            log.info("signal %s: unmounting", signal.Signals(sig).name)
            scope.cancel()
            return


def is_mounted(mountpoint: Path) -> bool:
    """True if ``mountpoint`` appears in /proc/self/mounts."""
    target = os.path.realpath(mountpoint)
    try:
        with open("/proc/self/mounts") as f:
            return any(line.split()[1] == target for line in f if len(line.split()) > 1)
    except OSError:
        return False


__all__ += ["is_mounted"]
