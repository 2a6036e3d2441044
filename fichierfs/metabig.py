"""Folders over 5,000 results (part of MetaCache): completion hooks around bigfolder.py.

A capped ``folder/ls`` reply (§2.2) is completed with ``file/ls`` date windows
(:func:`fichierfs.bigfolder.complete_listing`) in the background; meanwhile the known part is
served, a name not seen yet is asked by name (``file/info``), and ``status`` shows the progress.
"""


from __future__ import annotations

import logging
import math
from typing import Any

import trio

from fichierfs.bigfolder import CAP, complete_listing
from fichierfs.errors import FichierError, Incomplete, NotFound
from fichierfs.inodes import (
    Node,
    _Progress,
)
from fichierfs.metalocal import LocalChanges
from fichierfs.models import FolderListing, RemoteFile
from fichierfs.scheduler import Lane

log = logging.getLogger("fichierfs.meta")  # one logger for the metadata cache, whatever part logs


class BigFolders(LocalChanges):
    """Completing capped listings and answering lookups meanwhile (see module docstring)."""

    def _start_completion(self, ino: int, first: FolderListing, lane: Lane) -> None:
        """A capped reply: complete it with file/ls windows (bigfolder.py).

        A first listing shows the part known at once (readdir serves it; a lookup of a name
        not seen yet waits for the rest); a re-list keeps serving the previous complete
        listing until the new one is complete.
        """
        node = self.get(ino)
        if ino in self._completing:
            return
        first_time = node.listed_at is None or ino in self._incomplete
        if first_time:
            self._incomplete.setdefault(ino, trio.Event())
            self.merge(ino, first)
        if len(first.sub_folders) >= self.listing_cap:
            self._subs_cut.add(ino)  # sub-folders cut too: a name's absence cannot be asked by file/info
        self._complete_failed.discard(ino)
        self._completing.add(ino)
        window_lane = Lane.PREFETCH if lane in (Lane.INTERACTIVE, Lane.PREFETCH) else lane
        progress = self._progress[ino] = _Progress(len(first.files), 0, self.clock(), window_lane)
        if first_time:
            log.warning("%s holds %d entries or more (1fichier lists %d at most, §2.2): showing the first %d "
                        "until the rest is listed in upload-date windows, one per %.0f s (§4); a name not shown "
                        "yet is asked by name; `fichierfs status` shows the progress",
                        self.path_of(ino), self.listing_cap, self.listing_cap,
                        len(first.sub_folders) + len(first.files), self._folder_gap())

        def on_progress(known: int, windows: int) -> None:
            progress.known, progress.windows = known, windows

        async def file_ls(folder_id: int, after: str | None, before: str | None) -> tuple[RemoteFile, ...]:
            got: tuple[RemoteFile, ...] = await self.scheduler.call(
                self.scheduler.client.file_ls, folder_id, sent_after=after, sent_before=before, lane=window_lane)
            self.window_calls += 1
            return got

        async def run() -> None:
            try:
                full, _calls = await complete_listing(int(node.folder_id or 0), first, file_ls, self.listing_cap,
                                                      on_progress)
                self.merge(ino, full)
                if first_time:
                    log.info("%s is complete: %d files listed with %d date window(s) in %.0f s",
                             self.path_of(ino), len(full.files), progress.windows, self.clock() - progress.started)
            except FichierError as exc:
                self._complete_failed.add(ino)
                if node.listed_at is not None:
                    node.listed_at = -math.inf  # re-list at the next use
                log.log(exc.level, "listing %s (over %d results) could not be completed: %s",
                        self.path_of(ino), CAP, exc)
            finally:
                self._completing.discard(ino)
                self._progress.pop(ino, None)
                self._absent.pop(ino, None)
                self._subs_cut.discard(ino)
                ev = self._incomplete.pop(ino, None)
                if ev is not None:
                    ev.set()

        if self._background is not None:
            self._background.start_soon(run)
        else:  # no nursery (tests): complete inline
            self._inline.append(run)

    def _stall_limit(self) -> float:
        return float(getattr(getattr(self.scheduler, "budgets", None), "stall_limit", 30.0))

    def _folder_gap(self) -> float:
        budgets = getattr(self.scheduler, "budgets", None)
        return float(getattr(budgets, "same_folder_interval", 31.0))

    def incomplete(self) -> list[dict[str, Any]]:
        """The folders whose capped listing is being completed: path, files known so far, date
        windows done, seconds since the capped reply, and when the next window may start (each
        window is a listing of the folder: one per 31 s, §4). 1fichier gives no total count
        (§2.2), so how many are missing is not known until the last window. A folder whose
        completion failed is listed with ``failed`` (it is re-listed at its next use)."""
        out = []
        now = self.clock()
        for ino, pr in self._progress.items():
            node = self._nodes.get(ino)
            if node is None or ino not in self._incomplete:
                continue
            try:
                nxt = float(self.scheduler.next_allowed("file/ls", int(node.folder_id or 0)))
            except Exception:  # noqa: BLE001 - a status figure only
                nxt = 0.0
            out.append({"path": self.path_of(ino), "known": pr.known, "windows": pr.windows,
                        "listing_for": round(now - pr.started, 1), "next_window_in": round(nxt, 1),
                        "at_least": self.listing_cap})
        for ino in self._complete_failed:  # partial, and no window running: re-listed at the next use
            node = self._nodes.get(ino)
            if node is not None and ino not in self._completing:
                out.append({"path": self.path_of(ino), "known": len(node.children), "failed": True,
                            "at_least": self.listing_cap})
        return out

    async def wait_complete(self, ino: int) -> None:
        """Wait until folder ``ino``'s capped listing is complete (at most the stall limit).

        Raises:
            Incomplete (EAGAIN): still incomplete after the stall limit, or completing failed.
        """
        ev = self._incomplete.get(ino)
        if ev is not None:
            with trio.move_on_after(self._stall_limit()):
                await ev.wait()
            if not ev.is_set():
                raise Incomplete(f"{self.path_of(ino)} is still being listed (over {CAP} files)")
        if ino in self._complete_failed:
            raise Incomplete(f"{self.path_of(ino)}: its listing (over {CAP} files) could not be completed")

    async def _lookup_unseen(self, p: Node, name: str, lane: Lane) -> Node | None:
        """A name not seen (yet) in folder ``p``, whose capped listing is being completed.

        Rule (NOTES.md, issue 13): ask 1fichier for that very name — ONE ``file/info`` by
        ``folder_id`` + ``filename`` (§2.4): the general 3/s budget, never a listing's 30 s per
        folder, so it answers in about a second even at the real limits, where the folder's
        completion takes one 31 s window per 5,000 files. The file it names is added to the
        partial listing (same url → same inode once complete); #469 is 1fichier's own "no such
        file in that folder": ENOENT, remembered until the folder is complete. Only when the
        question cannot be asked (a flood lock, no network, sub-folders cut by the cap, a
        `` (dup …)`` name meta gives a duplicate) does the lookup wait for the completion, and
        gets EAGAIN after the stall limit.
        """
        from fichierfs.names import NameError_, encode

        if name in self._absent.get(p.ino, ()):
            return None
        try:
            remote = encode(name)
        except NameError_:
            return None  # not a name 1fichier can hold
        if p.ino not in self._subs_cut and " (dup " not in name:  # a dup name is ours (_dup_name), not 1fichier's
            progress = self._progress.get(p.ino)
            # in the lane of the folder's windows, behind them: back-to-back lookups (cp -r of new
            # files) must not hold the windows back (a lane is served first come, first served)
            probe_lane = progress.lane if progress is not None else lane
            try:
                self.probes += 1
                with trio.fail_after(self._stall_limit()):
                    rf: RemoteFile = await self.scheduler.call(
                        self.scheduler.client.file_info_by_name, int(p.folder_id or 0), remote, lane=probe_lane)
            except trio.TooSlowError:
                raise Incomplete(f"{self.path_of(p.ino)} is still being listed (over {CAP} files) and "
                                 f"{name!r} could not be asked within the stall limit") from None
            except NotFound:
                if p.ino in self._incomplete or p.ino in self._complete_failed:
                    self._absent.setdefault(p.ino, set()).add(name)
                return self.get_nowait(p.ino, name)
            except FichierError as exc:
                log.info("%s: %r could not be asked by name (%s): waiting for the folder's listing",
                         self.path_of(p.ino), name, exc)
            else:
                known = self.get_nowait(p.ino, name)  # completed (or created) meanwhile
                if known is not None:
                    return known
                if rf.folder_id is not None and int(rf.folder_id) != int(p.folder_id or 0):
                    return None
                if self._is_hidden(self._hidden_urls, rf.url, self.clock()):
                    return None  # deleted here, the delete is pending
                node = self._file_node(rf, p.ino, name)
                p.children[name] = node.ino
                return node
        await self.wait_complete(p.ino)
        return self.get_nowait(p.ino, name)
