"""Status of the write side, a part of :class:`fichierfs.writer.WriteBack`.

The ``writeback`` section of the status document (contract with ``fichierfs status``: pending
files and changes, uploads in flight, figures, the rate, errors, journal commits) and waiting
until nothing is pending (``fichierfs sync``, ``umount --wait``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import trio

from fichierfs.errors import FichierError
from fichierfs.meta import MetaCache
from fichierfs.oprecords import describe
from fichierfs.staged import Staged
from fichierfs.store import FileRow, Store
from fichierfs.uploader import Uploader


class WriteStatus:
    """What the write side reports (see module docstring); WriteBack owns this part."""

    # set by WriteBack (the owner of this part)
    meta: MetaCache
    store: Store
    uploader: Uploader
    by_row: dict[int, Staged]
    clock: Callable[[], float]
    _changed: trio.Event

    def _init_status(self) -> None:
        """The upload figures (WriteBack's constructor calls this)."""
        self._recent: deque[tuple[float, int, float]] = deque()  # (done, bytes, batch start)
        self.uploaded_files = 0
        self.uploaded_bytes = 0

    def pending(self) -> int:
        """Files and ops not done yet (empty local files without old copies are not pending)."""
        return self.store.journal_size()

    def statistics(self) -> dict[str, Any]:
        """The ``writeback`` section of the status document (contract with ``fichierfs status``).

        Keys: pending (journal entries: pending_files + pending_changes), pending_files (files
        to upload, in flight included: the one count ``status`` and ``sync`` show as files),
        pending_changes (namespace ops and local folders), pending_bytes, uploading [{path,
        bytes_done, size}], uploaded_files, uploaded_bytes, rate (bytes/s over the last 60 s),
        failed, errors [{path, error, attempts}], journal (entries), ops (namespace ops pending),
        local_folders.
        """
        now = self.clock()
        while self._recent and self._recent[0][0] < now - 60:
            self._recent.popleft()
        files = self.store.files()
        ops = self.store.ops()
        dirs = self.store.dirs()
        pending_files = [f for f in files if f.state != "empty" or f.replaces]
        errors = [{"path": self._row_path(f), "error": f.error, "attempts": f.attempts}
                  for f in files if f.error and f.state != "refused"]
        errors += [{"path": describe(o.op), "error": o.error, "attempts": o.attempts} for o in ops if o.error]
        errors += [{"path": d.name, "error": d.error, "attempts": d.attempts} for d in dirs if d.error]
        up = self.uploader.statistics()
        uploading = []
        for b in self.uploader.batches:
            first = b.members[0].row.name if b.members else "?"
            what = first if len(b.members) == 1 else f"{len(b.members)} files ({first}, …)"
            uploading.append({"path": what, "files": len(b.members), "bytes_done": b.bytes_done, "size": b.size,
                              "phase": b.phase})
        refused = [f for f in files if f.state == "refused"]
        to_upload = len(pending_files) - len(refused)
        return {
            "pending": to_upload + len(ops) + len(dirs),
            "pending_files": to_upload,
            "pending_changes": len(ops) + len(dirs),
            "pending_bytes": sum(f.size for f in pending_files if f.state != "refused"),
            "uploading": uploading,
            "uploaded_files": self.uploaded_files,
            "uploaded_bytes": self.uploaded_bytes,
            "rate": self._rate(now),
            "failed": len(errors),
            "errors": errors,
            "refused": [{"path": self._row_path(f), "error": f.error} for f in refused],
            "over_quota": up["over_quota"],
            "batches": up["batches"],
            "posts": up["posts"],
            "journal": len(files) + len(ops) + len(dirs),
            "journal_commits": self.store.commits,
            "journal_commit_seconds": round(self.store.commit_seconds, 3),
            "journal_commit_max": round(self.store.commit_max, 4),
            "ops": len(ops),
            "local_folders": len(dirs),
        }

    def _rate(self, now: float) -> float:
        """Bytes/s of the uploads finished in the last 60 s, over the time they actually took
        (from the start of the first of their batches to now), so a burst after a remount is
        not averaged over 60 s; 0 (no meaningful rate yet) with less than 2 s of history."""
        if not self._recent:
            return 0.0
        span = now - min(t0 for _, _, t0 in self._recent)
        if span < 2.0:
            return 0.0
        return sum(b for _, b, _ in self._recent) / span

    def _row_path(self, row: FileRow) -> str:
        st = self.by_row.get(row.id)
        if st is not None:
            try:
                return self.meta.path_of(st.ino)
            except FichierError:
                pass
        return row.name

    async def wait_drained(self) -> None:
        """Wait until nothing is pending (``fichierfs sync``, ``umount --wait``, tests)."""
        while self.pending() > 0:
            await self._changed.wait()
