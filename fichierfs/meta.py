"""MetaCache: the inode table and folder listings, the only source of metadata.

Design (design.md Part A §5.2, §6; Part B §9):

* **Listings are the only metadata source.** A folder's content comes from ONE
  ``folder/ls`` call with ``files:1`` (docs/1fichier-api.md §2.2), which gives every
  sub-folder and every file with size, date, checksum and MIME type. ``lookup`` and
  ``getattr`` are answered from the cached listing and never cost a per-file call; ``readdir``
  hands out full attributes so ``ls -l`` fans out to nothing (mountpoint-s3 #1801, s3fs #303).
* **Inodes are stable**: a folder keeps its inode for its ``folder_id``, a file for its
  ``url`` (§7: the url is a file's identity), across re-listings. The root is inode 1.
* **Kernel lookup counts** are kept per inode (``remember``/``forget``); an inode that
  vanished remotely stays in the table until the kernel forgets it.
* **Freshness**: a listing is fresh for ``dir_ttl`` seconds. A stale listing is still served
  at once and refreshed in the background (stale-while-revalidate), because 1fichier allows
  the same folder to be listed only once per 30 s (§4): blocking on a re-list would stall
  every ``stat``. Only a folder never listed makes the caller wait. A name absent from a
  fresh listing is a cached negative entry (no call).
* **Change detection**: a re-list is diffed against the previous one; names that went away
  or now point elsewhere are invalidated in the kernel (``invalidate_entry``) and inodes whose
  size or date changed get ``invalidate_inode``.
* **Names** are decoded from 1fichier's encoding (:mod:`fichierfs.names`, §7). Duplicate
  names in one folder (§7, §8.3: allowed remotely) are shown deterministically: the newest
  file (latest upload date, then url) keeps the name, the others get `` (dup <id>)`` before
  their extension; a folder always wins over a file of the same name.

Concurrency: everything here is plain synchronous code except :meth:`MetaCache.ensure_listed`,
which awaits the scheduler (and coalesces concurrent listings of one folder through it).
"""

from __future__ import annotations

from typing import Any

from fichierfs.attrs import Attr, LocalAttrs, StagedSize
from fichierfs.errors import Incomplete, NoEntry
from fichierfs.inodes import (
    ROOT_INODE,
    KernelNotifier,
    Node,
    NullNotifier,
    RecordingNotifier,
)
from fichierfs.metafresh import Freshness

__all__ = ["ROOT_INODE", "Node", "KernelNotifier", "NullNotifier", "RecordingNotifier", "MetaCache",
           "NoEntry", "Incomplete"]


class MetaCache(Freshness):
    """The inode table plus folder listings (see module docstring): the one facade vfs uses.

    Built in parts, each its own module and each a base of the next: the inode table
    (:mod:`fichierfs.inodes`), merging and persisting listings (:mod:`fichierfs.metamerge`),
    changes shared with other mounts (:mod:`fichierfs.metashare`), local mutations
    (:mod:`fichierfs.metalocal`), folders over 5,000 results (:mod:`fichierfs.metabig`),
    freshness and look-ups that may list (:mod:`fichierfs.metafresh`); here the attributes
    (the one answer to getattr) and the statistics.

    Args:
        scheduler: the API scheduler; only ``call(client.folder_ls, folder_id, files=True, lane=…)`` is used.
        root_folder_id: the remote folder shown as the mount root (0 = the account root, §7).
        dir_ttl: seconds a listing is fresh.
        clock: monotonic seconds (``trio.current_time`` in tests under MockClock).
        notifier: where kernel invalidations go.
    """

    def attr(self, ino: int) -> Attr:
        """The attributes inode ``ino`` shows: its listing's, under the staged size and the
        local attributes (attrs.py). No I/O. Raises NoEntry (ENOENT) for an unknown inode."""
        return self.attr_of(self.get(ino))

    def attr_of(self, node: Node) -> Attr:
        """:meth:`attr` of a node already in hand (readdir of a snapshot of nodes)."""
        return self.overlay.compose(node.ino, node.key, is_dir=node.is_dir, mode=node.mode, size=node.size,
                                    mtime=node.mtime, ttl=self.kernel_ttl(node))

    def show_owner(self, uid: int, gid: int, *, read_only: bool) -> None:
        """The owner shown where no program set one, and whether write permission is shown."""
        self.overlay.uid, self.overlay.gid, self.overlay.read_only = uid, gid, read_only

    def stage(self, node: Node | int, staged: StagedSize) -> None:
        """The writer: ``staged`` (a staging copy, its size kept current) is this file's content now."""
        self.overlay.stage(node if isinstance(node, int) else node.ino, staged)

    def unstage(self, ino: int, staged: StagedSize | None = None) -> None:
        """The writer: inode ``ino``'s staging copy ``staged`` is no longer its content."""
        self.overlay.unstage(ino, staged)

    def set_local_attrs(self, key: str, attrs: LocalAttrs | None) -> None:
        """The local attribute store: ``key``'s attributes set by programs are now ``attrs``."""
        self.overlay.set_local(key, attrs)

    def statistics(self) -> dict[str, Any]:
        """Inodes known, folders listed, listings made."""
        return {
            "inodes": len(self._nodes),
            "folders_listed": sum(1 for n in self._nodes.values() if n.is_dir and n.listed_at is not None),
            "listings": self.listings,
            "window_listings": self.window_calls,
            "incomplete_folders": len(self._incomplete),
            "shared_changes_applied": self.shared_applied,
            "incomplete": self.incomplete(),
            "lookups_by_name": self.probes,
        }
