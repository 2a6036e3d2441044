"""Mount lifecycle: lock the store, build the core, run pyfuse3 in one nursery.

``run_mount`` is what ``fichierfs mount -f`` runs. Order of start-up:

1. the store directory of this account and folder (``Options.store_dir``) is locked: a second
   mount of the same account and folder would share its journal;
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

import fcntl
import hashlib
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pyfuse3
import trio

from fichierfs.api import Secret
from fichierfs.config import Options
from fichierfs.core import build_core
from fichierfs.errors import ConfigError
from fichierfs.ops import Operations, PyfuseNotifier

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
    account = hashlib.sha256(api_key.reveal().encode()).hexdigest()
    store_dir = options.store_dir(account)
    _lock_store(store_dir)
    history = store_dir.parent / f"rate-{hashlib.sha256((options.api_url + account).encode()).hexdigest()[:16]}.json"
    notifier = PyfuseNotifier()
    async with trio.open_nursery() as nursery:
        await nursery.start(notifier.run)
        async with build_core(
            options, None, api_key, store_dir=store_dir, notifier=notifier, history=history
        ) as core:
            ops = Operations(core.fs, entry_timeout=options.entry_timeout, attr_timeout=options.attr_timeout,
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
        nursery.cancel_scope.cancel()


_LOCKS: list[int] = []


def _lock_store(store_dir: Path) -> None:
    """Refuse a second mount of the same account and folder (they would share one journal).

    Raises:
        ConfigError: another live fichierfs process holds the lock.
    """
    store_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(store_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ConfigError(f"{store_dir} is in use by another fichierfs mount of the same account and folder") from None
    _LOCKS.append(fd)


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
