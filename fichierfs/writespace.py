"""Space accounting of the write side (df, ENOSPC), a part of :class:`fichierfs.writer.WriteBack`.

``df`` shows the last ``user/info`` figure (§2.12) plus the bytes this mount uploaded since,
minus the bytes it deleted since (sizes of urls noted before their ``file/rm``), plus the bytes
staged and not uploaded yet. A write is refused with ENOSPC when the account is known to be
full (an over-quota refusal of an upload, or growth beyond the known free space).
"""

from __future__ import annotations

import errno
import math
from collections.abc import Callable

from fichierfs.meta import MetaCache
from fichierfs.models import FileUrl
from fichierfs.staged import Staged
from fichierfs.uploader import Uploader


class SpaceAccounting:
    """df figures and the ENOSPC check (see module docstring); WriteBack owns this part."""

    # set by WriteBack (the owner of this part)
    meta: MetaCache
    uploader: Uploader
    by_row: dict[int, Staged]
    clock: Callable[[], float]
    uploaded_bytes: int

    def _init_space(self) -> None:
        """The figures df is built from (WriteBack's constructor calls this)."""
        self.deleted_bytes = 0
        self._url_size: dict[str, int] = {}  # sizes of urls queued for deletion (df)
        self._space: tuple[int, int, int, int] | None = None  # (total, used, uploaded, deleted) at user/info
        self._pending_sum: tuple[float, int] = (-math.inf, 0)

    def note_size(self, url: str) -> None:
        """Remember the size of a remote file about to be deleted (df counts it as freed)."""
        if url not in self._url_size:
            node = self.meta.node_for_url(FileUrl(url))
            if node is not None and node.file is not None:
                self._url_size[url] = int(node.file.size)

    def deleted(self, urls: list[str]) -> None:
        """``urls`` were deleted (file/rm): df counts their sizes as freed."""
        freed = sum(self._url_size.pop(u, 0) for u in urls)
        self.deleted_bytes += freed
        if freed:
            self.uploader.space_freed()

    def account_space(self, total: int, used: int) -> None:
        """A fresh ``user/info`` answer: the base of :meth:`space` (uploads and deletes since
        are added to it by this mount)."""
        self._space = (total, used, self.uploaded_bytes, self.deleted_bytes)

    def pending_bytes(self) -> int:
        """Bytes staged and not uploaded yet (recomputed at most once a second)."""
        now = self.clock()
        if now - self._pending_sum[0] >= 1.0:
            total = sum(st.size for st in self.by_row.values())
            self._pending_sum = (now, total)
        return self._pending_sum[1]

    def space(self) -> tuple[int, int] | None:
        """(total, used) as this mount knows it: the last user/info figure + bytes uploaded
        since − bytes deleted since + bytes staged and not uploaded yet; None before user/info.
        While an upload is refused for lack of space, used = total: df agrees with ENOSPC."""
        if self._space is None:
            return None
        total, used, up0, del0 = self._space
        if self.uploader.over_quota is not None:
            return total, total
        used = used + (self.uploaded_bytes - up0) - (self.deleted_bytes - del0) + self.pending_bytes()
        return total, max(0, used)

    def _check_space(self, st: Staged, growth: int) -> None:
        """ENOSPC when the account is known to be full (an over-quota refusal, or growth
        beyond the known free space)."""
        if growth <= 0:
            return
        if self.uploader.over_quota is not None:
            raise OSError(errno.ENOSPC, f"the 1fichier account is full ({self.uploader.over_quota})")
        sp = self.space()
        if sp is not None and sp[1] + growth > sp[0]:
            raise OSError(errno.ENOSPC, "the 1fichier account has no space left for this write")
