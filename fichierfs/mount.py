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

import errno
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
from fichierfs.chunks import ChunkCache
from fichierfs.config import Options
from fichierfs.meta import ROOT_INODE, MetaCache
from fichierfs.metastore import MetaStore, Snapshot
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
        meta = MetaCache(scheduler, 0, dir_ttl=options.dir_cache_time, notifier=notifier)
        cache = ChunkCache(options.memory_budget, options.chunk_size)
        async with trio.open_nursery() as nursery:
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
            history = store_dir.parent / f"rate-{hashlib.sha256((options.api_url + account).encode()).hexdigest()[:16]}.json"
            _load_history(scheduler, history)
            scheduler.on_charge = lambda: _save_history(scheduler, history)  # listings: before they go out
            nursery.start_soon(_save_history_every, scheduler, history, 2.0)
            metastore, snapshot = open_metadata(options, store_dir, account)
            if snapshot is not None:
                meta.rebase(snapshot.root_folder_id)  # the resolved --remote-folder, persisted
            elif options.remote_folder.strip("/"):
                meta.rebase(await meta.resolve_path(options.remote_folder, lane=Lane.PREFETCH))
            meta.attach_store(metastore)
            if snapshot is not None:
                meta.reserve_inodes(snapshot.max_ino)  # before the replay creates inodes
            store = Store(store_dir / "store.db")
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
            served = snapshot is not None and await serve_persisted(meta, scheduler, snapshot)
            snapshot = None  # the nodes hold what they need; let the loaded listings go (RSS)
            if served:
                pass  # live at once from the persisted listings; stale folders re-list when used
            else:
                wait = scheduler.next_allowed("folder/ls", int(meta.get(ROOT_INODE).folder_id or 0))
                if wait > 1:
                    log.info("waiting %.0f s: 1fichier allows one listing of a folder per 30 s (§4), "
                             "and the previous mount listed it recently", wait)
                await meta.ensure_listed(ROOT_INODE, lane=Lane.PREFETCH)  # may wait out the budget, never stalls
            await nursery.start(metastore.run, meta.persist_dirty)
            if options.prefetch_tree:
                nursery.start_soon(meta.prefetch_tree)
            if not options.read_only:
                await nursery.start(writeback.run)
            elif writeback.pending():
                log.warning("%d pending change(s) in the journal are not uploaded on a read-only mount",
                            writeback.pending())
            fs = Filesystem(
                meta, reader, scheduler, read_only=options.read_only, statfs_ttl=options.statfs_ttl, writer=writeback
            )
            if options.thumbnails != "allow":
                fs.policy = ProcessPolicy(options.thumbnails)
                fs.status_sources["storm"] = fs.policy.statistics
            ops = Operations(fs, entry_timeout=options.entry_timeout, attr_timeout=options.attr_timeout,
                             negative_timeout=options.negative_timeout)
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
                _save_history(scheduler, history)
                writeback.stop()
                store.close()
                meta.persist_dirty()
                metastore.close()
                stats = scheduler.statistics()
                log.info("API calls this session: %s", stats.get("calls"))
                nursery.cancel_scope.cancel()


def open_metadata(options: Options, store_dir: Path, account: str) -> tuple[MetaStore, Snapshot | None]:
    """The persisted listings of this account + remote folder (metastore.py), and what they hold.

    A DB of another format, account, API address or remote folder, or a damaged one, is
    rebuilt (never trusted); a DB without a listed root gives no snapshot.
    """
    t0 = time.monotonic()
    identity = f"{options.api_url}\0{account}\0{options.remote_folder.strip('/')}"
    metastore = MetaStore(store_dir / "metadata.db", identity)
    snapshot = metastore.load()
    if snapshot is not None:
        n = sum(len(p.listing.files) for p in snapshot.folders)
        log.info("metadata cache: %d folder listings, %d files loaded in %.2f s",
                 len(snapshot.folders), n, time.monotonic() - t0)
    return metastore, snapshot


async def serve_persisted(meta: MetaCache, scheduler: Scheduler, snapshot: Snapshot) -> bool:
    """Merge the persisted listings and check the key cheaply; False: list the root as usual.

    The check is ONE ``file/info`` (§2.4) of a file the persisted listings hold: it costs
    only the general budget (never a listing's 30 s or user/info's 5 min), a bad or revoked
    key fails it with AuthError (the mount fails with exit 1 as before), and any other answer
    (the file, or #469 if another client deleted it) proves the key is accepted. With no file
    known, the root is listed as on a first mount.

    Raises:
        AuthError: the key is refused.
    """
    from fichierfs.errors import AuthError, FichierError

    loaded = meta.load(snapshot)
    if meta.get(ROOT_INODE).listed_at is None:
        log.info("the previous mount stopped before saving its root listing: listing it again")
        return False
    url = next((p.listing.files[0].url for p in snapshot.folders if p.listing.files), None)
    if url is None:
        return False
    try:
        await scheduler.call(scheduler.client.file_info, url, lane=Lane.INTERACTIVE)
    except AuthError:
        raise
    except FichierError as exc:
        if exc.errno not in (errno.ENOENT, errno.EACCES):  # #469/#631: the key was accepted
            log.info("key check by file/info failed (%s): listing the root instead", exc)
            return False
    log.info("served %d persisted folder listings; key checked with one file/info call", loaded)
    return True


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
