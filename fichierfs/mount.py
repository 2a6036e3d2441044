"""Mount lifecycle: build client → scheduler → caches → vfs → ops, run pyfuse3 in one nursery.

``run_mount`` is what ``fichierfs mount -f`` runs. Order of start-up:

1. an ``httpx.AsyncClient`` and the :class:`~fichierfs.api.FichierClient`;
2. the :class:`~fichierfs.scheduler.Scheduler` (the only caller of the API) and its budgets,
   scaled by ``--budget-scale``;
3. the :class:`~fichierfs.meta.MetaCache`; the root folder (``--remote-folder``) is resolved
   and listed BEFORE the kernel mount, so a wrong key or a missing folder fails the mount
   with a clear message instead of giving an empty drive (this listing is needed by the
   first ``ls`` anyway, so it costs nothing extra);
4. the chunk cache and reader; the journal (:class:`~fichierfs.store.Store`, in
   ``Options.store_dir``) and the :class:`~fichierfs.writer.WriteBack` worker, which replays
   the journal (pending uploads, deletes, moves of an earlier mount start right away, in the
   background: they never hold the mount up, rclone #2364); the
   :class:`~fichierfs.vfs.Filesystem`, the pyfuse3 adapter;
5. ``pyfuse3.init`` and ``pyfuse3.main`` in the same nursery as the background tasks
   (scheduler dispatcher, kernel invalidations, background re-lists, write-back).

A plain unmount with changes not uploaded yet keeps them in the journal for the next mount
and logs how many there are (``fichierfs umount --wait`` waits for them instead).

It ends when the file system is unmounted (``fichierfs umount`` / ``fusermount3 -u``) or on
SIGTERM/SIGINT (then it unmounts itself).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pyfuse3
import trio

from fichierfs.api import FichierClient, Secret
from fichierfs.attrshare import AttrShare
from fichierfs.budget import HostBudget, SharedBudget, host_budget_path, namespace
from fichierfs.chunks import ChunkCache
from fichierfs.config import Options
from fichierfs.meta import ROOT_INODE, MetaCache
from fichierfs.models import FileUrl
from fichierfs.ops import Operations, PyfuseNotifier
from fichierfs.reader import ReadManager
from fichierfs.scheduler import Budgets, Lane, Scheduler
from fichierfs.store import Store
from fichierfs.storm import ProcessPolicy
from fichierfs.vfs import Filesystem
from fichierfs.writer import WriteBack

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
) -> None:
    """Mount and serve until unmounted or signalled.

    Args:
        options: every tunable.
        mountpoint: an existing empty directory.
        api_key: the account's key (never logged).
        ready: called once the kernel mount is live (the CLI's background parent waits for it).

    Raises:
        FichierError subclasses (AuthError for a bad key, NoEntry for a missing remote
        folder) before the kernel mount; nothing after it except bugs.
    """
    timeout = httpx.Timeout(60.0, connect=15.0)
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=16)
    async with httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False) as http:
        client = FichierClient(http, api_key, base_url=options.api_url)
        budgets = Budgets(stall_limit=options.stall_limit).scaled(options.budget_scale)
        # stall_limit is a user-facing wait, not an API spacing: keep it unscaled.
        budgets = _with(budgets, stall_limit=options.stall_limit)
        scheduler = Scheduler(client, budgets)
        notifier = PyfuseNotifier()
        meta = MetaCache(scheduler, 0, dir_ttl=options.dir_ttl, notifier=notifier)
        cache = ChunkCache(options.memory_budget, options.chunk_size)
        async with trio.open_nursery() as nursery, contextlib.AsyncExitStack() as stack:
            await nursery.start(scheduler.run)
            await nursery.start(notifier.run)
            meta.attach_nursery(nursery)
            reader = ReadManager(
                scheduler,
                cache,
                chunk_size=options.chunk_size,
                readahead_max=options.readahead_max,
                token_ttl=options.token_ttl,
            )
            await nursery.start(reader.run)
            account = hashlib.sha256(api_key.reveal().encode()).hexdigest()
            store_dir = options.store_dir(account)
            _lock_store(store_dir)
            history: Path | None = None
            shared = await _shared_budget(options, account, stack)
            if shared is None:  # --coordinator none: this mount alone, history in a file of its own
                history = store_dir.parent / f"rate-{hashlib.sha256((options.api_url + account).encode()).hexdigest()[:16]}.json"
                _load_history(scheduler, history)
                scheduler.on_charge = lambda: _save_history(scheduler, history)  # listings: before they go out
                nursery.start_soon(_save_history_every, scheduler, history, 2.0)
            else:  # the shared store is the history: what the other (and earlier) mounts spent
                scheduler.shared = shared
                scheduler.import_history(await shared.history(), 0.0)
                log.info("API budget shared through %s", shared.status().get("url") or shared.status().get("path"))
            if options.remote_folder.strip("/"):
                meta.rebase(await meta.resolve_path(options.remote_folder, lane=Lane.PREFETCH))
            store = Store(store_dir / "store.db")
            if shared is not None:  # times and modes set on one mount are seen on the others
                attrshare = AttrShare(store, shared, on_applied=lambda key: _forget_attrs(meta, notifier, key))
                await nursery.start(attrshare.run)
            writeback = WriteBack(
                scheduler,
                store,
                meta,
                store_dir,
                delay=options.write_back_delay,
                max_uploads=options.max_uploads,
                clean_bytes=options.clean_cache,
            )
            writeback.replay()  # before the first listing, so that it is merged over the journal
            wait = scheduler.next_allowed("folder/ls", int(meta.get(ROOT_INODE).folder_id or 0))
            if wait > 1:
                log.info("waiting %.0f s: 1fichier allows one listing of a folder per 30 s (§4), "
                         "and the previous mount listed it recently", wait)
            await meta.ensure_listed(ROOT_INODE, lane=Lane.PREFETCH)  # may wait out the budget, never stalls
            if not options.read_only:
                await nursery.start(writeback.run)
            elif writeback.pending():
                log.warning("%d pending change(s) in the journal are not uploaded on a read-only mount",
                            writeback.pending())
            fs = Filesystem(
                meta, reader, scheduler, read_only=options.read_only, statfs_ttl=options.statfs_ttl, writer=writeback
            )
            if shared is not None:
                fs.status_sources["attrshare"] = attrshare.statistics
            if options.thumbnails != "allow":
                fs.policy = ProcessPolicy(options.thumbnails)
                fs.status_sources["storm"] = fs.policy.statistics
            ops = Operations(fs, entry_timeout=options.entry_timeout, attr_timeout=options.attr_timeout)
            pyfuse3.init(ops, str(mountpoint), fuse_options(options))
            unmounted_by_us = False
            try:
                nursery.start_soon(_signals, nursery.cancel_scope)
                log.info("mounted %s on %s", options.remote_folder, mountpoint)
                ready()
                await pyfuse3.main()
                log.info("%s was unmounted", mountpoint)
            except BaseException:
                unmounted_by_us = True
                raise
            finally:
                pyfuse3.close(unmount=unmounted_by_us)
                if history is not None:
                    _save_history(scheduler, history)
                writeback.stop()
                store.close()
                stats = scheduler.statistics()
                log.info("API calls this session: %s", stats.get("calls"))
                nursery.cancel_scope.cancel()


async def _shared_budget(options: Options, account: str, stack: contextlib.AsyncExitStack) -> SharedBudget | None:
    """The budget shared with the other mounts (``--coordinator``); None for ``none``."""
    if options.coordinator == "none":
        return None
    if options.coordinator == "host":
        host = HostBudget(host_budget_path(), namespace(options.api_url))
        stack.push_async_callback(host.aclose)
        return host
    from fichierfs.budget_redis import RedisBudget, redis_password

    password = redis_password(options.coordinator_password_file)
    return await stack.enter_async_context(
        RedisBudget.connect(options.coordinator, namespace(options.api_url, account), password=password)
    )


def _forget_attrs(meta: MetaCache, notifier: PyfuseNotifier, key: str) -> None:
    """Another mount set attributes of ``key``: drop what the kernel cached for that inode."""
    node = meta.node_for_folder(int(key[2:])) if key.startswith("d:") else meta.node_for_url(FileUrl(key))
    if node is not None:
        notifier.invalidate_inode(node.ino)


def _load_history(scheduler: Scheduler, path: Path) -> None:
    """Restore the API budget clocks of the previous mount of this account (see Scheduler.export_history)."""
    try:
        doc = json.loads(path.read_text())
        scheduler.import_history(doc["history"], time.time() - float(doc["wall"]))
    except FileNotFoundError:
        return
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.debug("rate history %s unreadable: %s", path, exc)


def _save_history(scheduler: Scheduler, path: Path) -> None:
    """Write the budget clocks atomically (a crash leaves the old or the new file, never half)."""
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text(json.dumps({"wall": time.time(), "history": scheduler.export_history()}))
        os.replace(tmp, path)
    except OSError as exc:
        log.debug("rate history %s not saved: %s", path, exc)


async def _save_history_every(scheduler: Scheduler, path: Path, period: float) -> None:
    """Keep the saved clocks fresh, so that even a kill -9 leaves a usable history."""
    while True:
        await trio.sleep(period)
        _save_history(scheduler, path)


_LOCKS: list[int] = []


def _lock_store(store_dir: Path) -> None:
    """Refuse a second mount of the same account and folder (they would share one journal).

    Raises:
        ConfigError: another live fichierfs process holds the lock.
    """
    from fichierfs.errors import ConfigError

    store_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(store_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ConfigError(f"{store_dir} is in use by another fichierfs mount of the same account and folder") from None
    _LOCKS.append(fd)


def _with(budgets: Budgets, **changes: float) -> Budgets:
    import dataclasses

    return dataclasses.replace(budgets, **changes)


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
