"""A staged file: the in-memory state of one local file of the write side (see fichierfs.writer)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(eq=False)
class Staged:
    """In-memory state of one local file (a ``files`` row, see store.py).

    Attributes:
        row: the journal row id (``staging/<row>``).
        ino: its inode.
        path: the staging file.
        size: bytes now (may be ahead of the row's ``size`` until the next flush).
        writers: open write handles; the file is not uploaded while > 0.
        handles: open handles of any kind that use the staging copy (fd kept open meanwhile).
        dirty: written since the last flush.
        due: clock time after which it may be uploaded.
    """

    row: int
    ino: int
    path: Path
    size: int = 0
    writers: int = 0
    handles: int = 0
    dirty: bool = False
    due: float = math.inf
    fd: int = -1
    inflight: bool = False
    """Its staging file is part of an upload batch in flight (the POST reads that inode)."""
    cowed: bool = False
    """Changed while in flight: the staging file was copied on write; upload it again."""

    def open_fd(self) -> int:
        if self.fd < 0:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        return self.fd

    def close_fd(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
