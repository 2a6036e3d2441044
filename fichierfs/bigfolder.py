"""Folders over 5,000 files: complete a capped listing with ``file/ls`` windows by upload date.

1fichier cuts every listing at 5,000 results and has no pagination parameter (§2.2, §2.3);
``file/ls`` takes ``sent_before`` / ``sent_after`` (``"YYYY-MM-DD HH:MM:SS"``, Paris time
like the ``date`` it filters, §7), so a folder's files can be fetched window by window.

Correctness does not depend on the order in which 1fichier fills a capped reply, nor on
whether the date bounds are strict or inclusive (§2.3 says neither):

* the time line is covered by windows ``[a, b)`` of whole seconds; a window is *proven*
  when its reply holds fewer than :data:`CAP` items (then it holds every file of the window);
  the folder is complete when windows covering the whole line are proven;
* a window is asked as ``sent_after = a - 1 s`` and ``sent_before = b`` (strict bounds give
  exactly ``[a, b)``; inclusive ones a little more, which is harmless: files are merged by url);
* when capped replies hold the *oldest* files of their window, everything before the newest
  date of a reply is known, and only ``[newest, b)`` must be asked next: one call per 5,000
  files. This is checked once per completion, with a call proving ``[a, newest)`` of the first
  reply (it must bring nothing new and fewer than 5,000 items); the emulator behaves so, and a
  12,000-file folder costs the folder/ls plus 3 file/ls;
* otherwise a capped reply is split at the 75th percentile of the upload dates it showed
  (inside the window) and both parts are asked: any order still converges.

Every call is a listing of the same folder: the scheduler spaces them by the folder's 30 s
rule (§4). More than 5,000 files uploaded in one second cannot be split: the window is
taken as it is, with a warning (the folder may stay incomplete).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from fichierfs.models import PARIS, FileUrl, FolderListing, RemoteFile

__all__ = ["CAP", "is_capped", "complete_listing"]

log = logging.getLogger(__name__)

CAP = 5000
"""Results per listing (§2.2 "List folders is limited to 5 000 results"; §2.3 for file/ls)."""

_FMT = "%Y-%m-%d %H:%M:%S"

FileLs = Callable[[int, str | None, str | None], Awaitable[tuple[RemoteFile, ...]]]
"""``file_ls(folder_id, sent_after, sent_before)`` through the scheduler."""


def is_capped(listing: FolderListing, cap: int = CAP) -> bool:
    """True when a folder/ls reply may have been cut (it holds ``cap`` results or more)."""
    return len(listing.sub_folders) + len(listing.files) >= cap


def _paris(rf: RemoteFile) -> str | None:
    return None if rf.date is None else rf.date.astimezone(PARIS).strftime(_FMT)


def _dates(files: list[RemoteFile]) -> list[str]:
    return [d for d in (_paris(f) for f in files) if d is not None]


def _minus_one(text: str) -> str:
    return (datetime.strptime(text, _FMT) - timedelta(seconds=1)).strftime(_FMT)


def _plus_one(text: str) -> str:
    return (datetime.strptime(text, _FMT) + timedelta(seconds=1)).strftime(_FMT)


def _inside(d: str | None, a: str | None, b: str | None) -> bool:
    return d is not None and (a is None or d >= a) and (b is None or d < b)


async def complete_listing(folder_id: int, first: FolderListing, file_ls: FileLs, cap: int = CAP,
                           on_progress: Callable[[int, int], None] = lambda n, calls: None
                           ) -> tuple[FolderListing, int]:
    """The complete listing of a folder whose folder/ls reply ``first`` was capped.

    Returns the listing (``first``'s sub-folders, every file) and the number of ``file/ls``
    calls made. ``on_progress(files_known, calls)`` is called after each window.
    """
    files: dict[FileUrl, RemoteFile] = {f.url: f for f in first.files}
    todo: list[tuple[str | None, str | None, list[RemoteFile]]] = [(None, None, list(first.files))]
    calls = 0
    trusted: bool | None = None  # does a capped reply hold the oldest files of its window? (checked once)

    async def ask(wa: str | None, wb: str | None) -> list[RemoteFile]:
        nonlocal calls
        got = await file_ls(folder_id, None if wa is None else _minus_one(wa), wb)
        calls += 1
        for f in got:
            files[f.url] = f
        on_progress(len(files), calls)
        return list(got)

    if first.sub_folders:
        # the cap counted the sub-folders too (a folder/ls reply lists them first): its files are
        # not what a capped file/ls reply holds (maybe none at all); start with file/ls on the whole line
        got = await ask(None, None)
        todo = [(None, None, got)] if len(got) >= cap else []

    while todo:
        a, b, seen = todo.pop()
        above = sorted(d for d in _dates(seen) if _inside(d, a, b) and (a is None or d > a))
        if not above:
            if a is not None and (b is None or _plus_one(a) < b):
                split = _plus_one(a)  # everything seen was in the window's first second
                firsts: list[tuple[str | None, str | None]] = [(a, split), (split, b)]
                for wa, wb in firsts:
                    got = await ask(wa, wb)
                    if len(got) >= cap:
                        if wa == a:
                            log.warning("folder %d: more than %d files uploaded in one second (%s): "
                                        "some may stay unlisted", folder_id, cap, a)
                        else:
                            todo.append((wa, wb, got))
            else:
                log.warning("folder %d: more than %d files uploaded in one second (%s): some may stay unlisted",
                            folder_id, cap, a)
            continue
        top = above[-1]
        if trusted is not False:
            # [a, top) should be entirely in ``seen`` if the server fills capped replies oldest first
            if trusted is None:
                before = set(files)
                proof = await ask(a, top)
                trusted = len(proof) < cap and set(f.url for f in proof) <= before
                if not trusted:
                    log.info("folder %d: capped replies are not oldest-first; splitting windows", folder_id)
                    if len(proof) >= cap:
                        todo.append((a, top, proof))
            got = await ask(top, b)
            if len(got) >= cap:
                todo.append((top, b, got))
            continue
        split = above[min(len(above) - 1, max(1, (len(above) * 3) // 4))]
        windows: list[tuple[str | None, str | None]] = [(a, split), (split, b)]
        for wa, wb in windows:
            got = await ask(wa, wb)
            if len(got) >= cap:
                todo.append((wa, wb, got))
    n_files = len(files)
    log.info("folder %d: capped listing completed with %d file/ls window(s): %d files", folder_id, calls, n_files)
    listing = FolderListing(first.folder_id, first.name, first.create_date, first.sub_folders,
                            tuple(files.values()))
    return listing, calls
