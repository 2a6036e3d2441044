"""build_core: the one place that assembles the FUSE-free core from Options and an HTTP transport.

``mount.py`` and the in-process test rigs (``tests/core/write_rig.py``, ``tests/core/test_vfs.py``,
the model test through the rig) all build the product with :func:`build_core`, so the tests run
the product's own wiring::

    httpx.AsyncClient(transport) → FichierClient → Scheduler (budgets from Options)
        → MetaCache (+ kernel notifier) → ChunkCache + ReadManager
        → Store + WriteBack (journal replay) → Filesystem (+ thumbnail policy)

Order of start-up (inside one nursery, :attr:`Core.nursery`):

1. the scheduler's dispatcher; the rate history of the previous process, if any (``history``:
   a listing of the root within 30 s of the last mount's would earn a flood lock, §4);
2. the reader's read-ahead host; the remote root (``--remote-folder``) resolved;
3. the journal (``store_dir/store.db``) and the write-back worker, replayed BEFORE the first
   listing so that the listing is merged over the journal;
4. the root listed (``list_root``), so that a wrong key or a dead URL fails here, before any
   kernel mount, with a clear error;
5. the write-back worker started (not on a read-only mount).

On exit (normal, error or cancellation) the history is saved, the writer stopped (pending
changes stay in the journal for the next mount: no drain), the journal closed and every task
of the nursery cancelled.

This module never imports pyfuse3 or the emulator: ``ops``/``mount`` sit above it.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import trio

from fichierfs.api import FichierClient, Secret
from fichierfs.attrshare import AttrShare
from fichierfs.budget import SharedBudget
from fichierfs.chunks import ChunkCache
from fichierfs.config import Options
from fichierfs.diskcache import DiskCache
from fichierfs.errors import AuthError, FichierError
from fichierfs.listshare import ListShare
from fichierfs.meta import ROOT_INODE, KernelNotifier, MetaCache
from fichierfs.metastore import MetaStore, Snapshot
from fichierfs.models import FileUrl
from fichierfs.reader import ReadManager, budget_shares
from fichierfs.scheduler import Budgets, Lane, Scheduler
from fichierfs.store import Store
from fichierfs.storm import ProcessPolicy
from fichierfs.vfs import Filesystem
from fichierfs.writer import WriteBack

__all__ = ["Core", "budgets_from", "build_core"]

log = logging.getLogger(__name__)

HTTP_TIMEOUT = httpx.Timeout(60.0, connect=15.0)
HTTP_LIMITS = httpx.Limits(max_connections=32, max_keepalive_connections=16)


@dataclass(frozen=True)
class Core:
    """The assembled core; every part is running while the ``build_core`` block lasts."""

    client: FichierClient
    scheduler: Scheduler
    meta: MetaCache
    cache: ChunkCache
    reader: ReadManager
    store: Store
    writer: WriteBack
    fs: Filesystem
    nursery: trio.Nursery
    """Hosts the background tasks; cancelling its scope ends the mount."""


def budgets_from(options: Options) -> Budgets:
    """The API budgets of ``options``: every spacing times ``budget_scale``, ``stall_limit`` unscaled.

    ``stall_limit`` is a user-facing wait, not an API spacing.
    """
    budgets = Budgets(stall_limit=options.stall_limit).scaled(options.budget_scale)
    return dataclasses.replace(budgets, stall_limit=options.stall_limit)


@asynccontextmanager
async def build_core(
    options: Options,
    transport: httpx.AsyncBaseTransport | None,
    api_key: Secret | str,
    *,
    store_dir: Path,
    notifier: KernelNotifier | None = None,
    history: Path | None = None,
    budgets: Budgets | None = None,
    list_root: bool = True,
    start_writer: bool = True,
    writer_retry: tuple[float, float] | None = None,
    persist_metadata: bool = True,
    shared: SharedBudget | None = None,
    account: str = "",
    say: Callable[[str], None] | None = None,
) -> AsyncIterator[Core]:
    """Build and start client → scheduler → meta / reader / writer → Filesystem (module docstring).

    Args:
        options: every tunable of the mount.
        transport: the HTTP transport (the in-process emulator's in tests); None = httpx's
            own network transport (TLS verified, ``HTTP_LIMITS``).
        api_key: the account's key (never logged).
        store_dir: the directory of the journal and staging files (created if missing).
            The caller locks it if it must be exclusive (``mount.py`` does).
        notifier: where kernel invalidations go (the caller runs it; None: nowhere).
        history: a JSON file of the API budget clocks, read at start and kept up to date
            (None: the scheduler starts with fresh clocks).
        budgets: overrides :func:`budgets_from(options) <budgets_from>` (tests).
        list_root: list the root folder before returning (the mount does, to fail early).
        start_writer: start the write-back worker (never on a read-only mount); False
            leaves the journal replayed but idle (tests of crashes).
        writer_retry: ``(retry_base, retry_max)`` of failed write-back items, seconds
            (tests); None = the writer's defaults.
        persist_metadata: keep listings in ``store_dir/metadata.db`` and serve them at the
            next start (issue 13); with a persisted root nothing is listed before returning:
            the key is checked with one ``file/info`` (:func:`serve_persisted`).
        shared: the API budget of the other mounts of the account (``fichierfs.budget``:
            host file or Redis; the caller opens and closes it). Its clocks also serve as the
            budget history; attributes set here are published to it and theirs applied here.
        account: the account's id (``fichierfs.account``): listings are shared only between
            mounts of one account (folder 0 is every account's root).
        say: told what a long start-up step waits for (the mount shows it to the person who
            ran ``fichierfs mount``); None: the log only.

    Raises:
        FichierError subclasses from the first calls (AuthError for a bad key, NoEntry for a
        missing ``remote_folder``).
    """
    if transport is None and options.source_address:
        # --source-address: connect from this local address (two mounts on one machine = two hosts, §3/§4)
        transport = httpx.AsyncHTTPTransport(limits=HTTP_LIMITS, local_address=options.source_address)
    async with httpx.AsyncClient(
        transport=transport, timeout=HTTP_TIMEOUT, limits=HTTP_LIMITS, follow_redirects=False
    ) as http:
        client = FichierClient(http, api_key, base_url=options.api_url)
        scheduler = Scheduler(client, budgets if budgets is not None else budgets_from(options))
        meta = MetaCache(scheduler, 0, dir_ttl=options.dir_cache_time, notifier=notifier)
        cache_bytes, pages_bytes, queue_bytes = budget_shares(options.memory_budget, options.chunk_size)
        cache = ChunkCache(cache_bytes, options.chunk_size)
        store: Store | None = None
        writer: WriteBack | None = None
        metastore: MetaStore | None = None
        try:
            async with trio.open_nursery() as nursery:
                try:
                    if shared is not None:
                        scheduler.shared = shared
                        scheduler.share_scope = account
                        scheduler.import_history(await shared.history(), 0.0)
                        st = shared.status()
                        log.info("API budget shared (%s) through %s", st.get("kind"), st.get("url") or st.get("path"))
                        if st.get("state") == "fallback" and say is not None:  # else a silent 2-minute start
                            say(f"WARNING: coordinator {st.get('url')} unreachable: conservative local budget until "
                                "it is back (every folder counts as just listed: a first listing may wait about "
                                "2 minutes)")
                    await nursery.start(scheduler.run)
                    meta.attach_nursery(nursery)
                    reader = ReadManager(
                        scheduler,
                        cache,
                        chunk_size=options.chunk_size,
                        readahead_max=options.readahead_max,
                        token_ttl=options.token_ttl,
                        disk=DiskCache(store_dir / "read-cache", options.disk_cache_size, options.chunk_size),
                        pages_budget=pages_bytes,
                        disk_queue_max=queue_bytes,
                    )
                    await nursery.start(reader.run)
                    if history is not None:
                        load_history(scheduler, history)
                        path = history
                        scheduler.on_charge = lambda: save_history(scheduler, path)  # before a listing goes out
                        nursery.start_soon(_save_history_every, scheduler, history, 2.0)
                    store_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before any FUSE request
                    snapshot: Snapshot | None = None
                    if persist_metadata:
                        metastore, snapshot = open_metadata(options, store_dir)
                    if snapshot is not None:
                        meta.rebase(snapshot.root_folder_id)  # the resolved --remote-folder, persisted
                    elif options.remote_folder.strip("/"):
                        meta.rebase(await meta.resolve_path(options.remote_folder, lane=Lane.PREFETCH))
                    meta.attach_store(metastore)
                    if snapshot is not None:
                        meta.reserve_inodes(snapshot.max_ino)  # before the replay creates inodes
                    store = Store(store_dir / "store.db")
                    store.feed(meta.set_local_attrs)  # meta answers getattr; the journal keeps them durable
                    writer = WriteBack(
                        scheduler,
                        store,
                        meta,
                        store_dir,
                        delay=options.write_back_delay,
                        max_uploads=options.max_uploads,
                        batch_files=options.upload_batch_files,
                        batch_bytes=options.upload_batch_bytes,
                        batch_wait=options.upload_batch_wait,
                        clean_bytes=options.clean_cache,
                    )
                    writer.on_clean = reader.adopt  # uploaded files join the on-disk read cache
                    attrshare: AttrShare | None = None
                    listshare: ListShare | None = None
                    if shared is not None:  # times and modes set on one mount are seen on the others
                        attrshare = AttrShare(store, shared, on_applied=lambda key: _forget_attrs(meta, key))
                        await nursery.start(attrshare.run)
                    if writer_retry is not None:
                        writer.retry_base, writer.retry_max = writer_retry
                    writer.replay()  # before the first listing, so that it is merged over the journal
                    if shared is not None:  # ... and its changes of folders (after the replay: not told again)
                        listshare = ListShare(meta, shared, account)
                        await nursery.start(listshare.run)
                    served = snapshot is not None and await serve_persisted(meta, scheduler, snapshot)
                    snapshot = None  # the nodes hold what they need; let the loaded listings go (RSS)
                    if list_root and not served:
                        wait = scheduler.next_allowed(client.folder_ls, int(meta.get(ROOT_INODE).folder_id or 0))
                        fallback = shared is not None and shared.status().get("state") == "fallback"
                        if wait > 1 and not fallback:  # in fallback the WARNING above said it (and waits longer)
                            text = (f"waiting {wait:.0f} s before listing {options.remote_folder}: 1fichier allows "
                                    "one listing of a folder per 30 s (§4), and the previous mount listed it recently")
                            (say or log.info)(text)
                        await meta.ensure_listed(ROOT_INODE, lane=Lane.PREFETCH)  # may wait out the budget
                    if metastore is not None:
                        await nursery.start(metastore.run, meta.persist_dirty)
                    if options.prefetch_tree:
                        nursery.start_soon(meta.prefetch_tree)
                    if options.read_only:
                        if writer.pending():
                            log.warning(
                                "%d pending change(s) in the journal are not uploaded on a read-only mount",
                                writer.pending(),
                            )
                    elif start_writer:
                        await nursery.start(writer.run)
                    fs = Filesystem(
                        meta,
                        reader,
                        scheduler,
                        read_only=options.read_only,
                        statfs_ttl=options.statfs_ttl,
                        writer=writer,
                    )
                    if attrshare is not None:
                        fs.status_sources["attrshare"] = attrshare.statistics
                    if listshare is not None:
                        fs.status_sources["listshare"] = listshare.statistics
                    if options.thumbnails != "allow":
                        fs.policy = ProcessPolicy(options.thumbnails)
                        fs.status_sources["storm"] = fs.policy.statistics
                    yield Core(client, scheduler, meta, cache, reader, store, writer, fs, nursery)
                finally:
                    if history is not None:
                        save_history(scheduler, history)
                    if writer is not None:
                        writer.stop()
                    if metastore is not None:
                        meta.persist_dirty()
                    log.info("API calls this session: %s", scheduler.statistics().get("calls"))
                    nursery.cancel_scope.cancel()
        finally:
            if store is not None:  # once no task of the nursery can touch it
                store.close()
            if metastore is not None:
                metastore.close()


# ---------------------------------------------------------------------- persisted metadata


def open_metadata(options: Options, store_dir: Path) -> tuple[MetaStore, Snapshot | None]:
    """The persisted listings of this account + remote folder (metastore.py), and what they hold.

    ``store_dir`` is already per API address, account and remote folder; its name and those
    are the DB's identity. A DB of another format or identity, or a damaged one, is rebuilt
    (never trusted); a DB without a listed root gives no snapshot.
    """
    t0 = time.monotonic()
    identity = f"{options.api_url}\0{store_dir.name}\0{options.remote_folder.strip('/')}"
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
    known, or a root that must be re-listed (a crash before its view was saved), the root is
    listed as on a first mount.

    Raises:
        AuthError: the key is refused.
    """
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


def _forget_attrs(meta: MetaCache, key: str) -> None:
    """Another mount set attributes of ``key``: drop what the kernel cached for that inode."""
    node = meta.node_for_folder(int(key[2:])) if key.startswith("d:") else meta.node_for_url(FileUrl(key))
    if node is not None:
        meta.notifier.invalidate_inode(node.ino)


# ---------------------------------------------------------------------- rate history


def load_history(scheduler: Scheduler, path: Path) -> None:
    """Restore the API budget clocks of the previous mount of this account (see Scheduler.export_history)."""
    try:
        doc = json.loads(path.read_text())
        scheduler.import_history(doc["history"], time.time() - float(doc["wall"]))
    except FileNotFoundError:
        return
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.debug("rate history %s unreadable: %s", path, exc)


def save_history(scheduler: Scheduler, path: Path) -> None:
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
        save_history(scheduler, path)
