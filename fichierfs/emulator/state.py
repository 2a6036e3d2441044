"""The emulated account, persisted in a state directory.

Layout of ``state_dir``:

* ``account.sqlite3`` — folders, files and account options (sqlite3, autocommit; survives restarts).
* ``blobs/<hex>`` — one file per stored file, holding its bytes. File bytes are never held whole in memory.

Model facts (doc sections):

* Folders are integers, root = 0 named "Root" (§7). Folder ids are allocated sequentially from 3 357 645
  ([UNVERIFIED choice]: the magnitude of the ids in the §2.2 capture).
* Files are identified by ``https://1fichier.com/?<id>`` with ``<id>`` 20 lowercase alphanumerics (§7).
* Duplicate file names are allowed in a folder (§7 "Duplicates"); names are case-sensitive (§7).
* Checksums are Whirlpool hex (§7 "Checksum"); dates are upload times (wall clock, epoch seconds) rendered
  as ``YYYY-MM-DD HH:MM:SS`` in Europe/Paris (§7 "Timestamps").
* Files uploaded without a valid key belong to no folder (``folder_id`` NULL) and carry a removal code
  (§6 step 4 "``remove`` is empty when the upload belongs to an account"; §2.5 ``code``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sqlite3
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import whirlpool

__all__ = ["Account", "FileRec", "FolderRec", "Token", "UploadSession", "URL_PREFIX", "file_id_from_url", "new_file_id",
           "paris_date"]

PARIS = ZoneInfo("Europe/Paris")
#: File links (§7 "Identity").
URL_PREFIX = "https://1fichier.com/?"
_LOWER_ALNUM = string.ascii_lowercase + string.digits
FIRST_FOLDER_ID = 3357645
CHUNK = 1 << 20


def paris_date(epoch: float) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in French time, no zone (§7 "Timestamps")."""
    return datetime.fromtimestamp(epoch, PARIS).strftime("%Y-%m-%d %H:%M:%S")


def new_file_id() -> str:
    """New ids are 20 lowercase chars (§7)."""
    return "".join(secrets.choice(_LOWER_ALNUM) for _ in range(20))


@dataclass
class FolderRec:
    id: int
    parent: int | None
    name: str
    create_time: float  # wall clock epoch seconds
    password: str = ""
    shared: int = 0
    shares: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class FileRec:
    id: str
    folder_id: int | None  # None: not tied to the account (anonymous upload)
    filename: str
    size: int  # bytes
    whirlpool: str  # hex
    content_type: str
    upload_time: float  # wall clock epoch seconds
    blob: str  # file name under blobs/
    description: str = ""
    password: str = ""
    no_ssl: int = 0
    inline: int = 0
    cdn: int = 0
    acl: dict[str, Any] = field(default_factory=dict)
    remove_code: str = ""
    seq: int = 0  # upload order

    @property
    def url(self) -> str:
        return URL_PREFIX + self.id

    def acl_flag(self) -> int:
        """Listings carry ``acl`` as 0/1 (§2.3); file/info carries the object (§2.4)."""
        a = self.acl or {}
        return int(bool(a.get("ip") or a.get("country") or a.get("email") or a.get("premium")))


_SCHEMA = """
CREATE TABLE IF NOT EXISTS folders (
    id INTEGER PRIMARY KEY, parent INTEGER, name TEXT NOT NULL, create_time REAL NOT NULL,
    password TEXT NOT NULL DEFAULT '', shared INTEGER NOT NULL DEFAULT 0, shares TEXT NOT NULL DEFAULT '[]');
CREATE TABLE IF NOT EXISTS files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, folder_id INTEGER, filename TEXT NOT NULL,
    size INTEGER NOT NULL, whirlpool TEXT NOT NULL, content_type TEXT NOT NULL, upload_time REAL NOT NULL,
    blob TEXT NOT NULL, description TEXT NOT NULL DEFAULT '', password TEXT NOT NULL DEFAULT '',
    no_ssl INTEGER NOT NULL DEFAULT 0, inline INTEGER NOT NULL DEFAULT 0, cdn INTEGER NOT NULL DEFAULT 0,
    acl TEXT NOT NULL DEFAULT '{}', remove_code TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS files_folder ON files(folder_id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_FILE_COLS = (
    "seq, id, folder_id, filename, size, whirlpool, content_type, upload_time, blob, description, password, "
    "no_ssl, inline, cdn, acl, remove_code"
)


def _file(row: tuple[Any, ...]) -> FileRec:
    (seq, fid, folder_id, filename, size, wp, ctype, up, blob, desc, pw, no_ssl, inline, cdn, acl, rm) = row
    return FileRec(
        id=fid, folder_id=folder_id, filename=filename, size=size, whirlpool=wp, content_type=ctype,
        upload_time=up, blob=blob, description=desc, password=pw, no_ssl=no_ssl, inline=inline, cdn=cdn,
        acl=json.loads(acl), remove_code=rm, seq=seq,
    )


def _folder(row: tuple[Any, ...]) -> FolderRec:
    fid, parent, name, ct, pw, shared, shares = row
    return FolderRec(fid, parent, name, ct, pw, shared, json.loads(shares))


class Account:
    """One 1fichier account (all ``emu-*`` keys map to it). Synchronous; sqlite3 autocommit."""

    def __init__(self, state_dir: Path, wall_clock: Any, date_spacing: float = 0.0) -> None:
        self.dir = Path(state_dir)
        self._spacing = date_spacing
        self.dir.mkdir(parents=True, exist_ok=True)
        self.blobs = self.dir / "blobs"
        self.blobs.mkdir(exist_ok=True)
        self._wall = wall_clock
        self.db = sqlite3.connect(self.dir / "account.sqlite3", isolation_level=None, check_same_thread=False)
        # WAL + synchronous=NORMAL: commits survive a killed emulator process (what tests do), without one
        # fsync per stored file (seeding 12,000 files took minutes with the default FULL journal)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        if self._q1("SELECT id FROM folders WHERE id = 0") is None:
            self.db.execute(
                "INSERT INTO folders (id, parent, name, create_time) VALUES (0, NULL, 'Root', ?)", (self._wall(),)
            )
            self.set_meta("next_folder_id", str(FIRST_FOLDER_ID))
        self._last_time = float(self._q1("SELECT COALESCE(MAX(upload_time), 0) FROM files")[0])

    def close(self) -> None:
        self.db.close()

    # -- helpers ---------------------------------------------------------------------------------------
    def _q1(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        return self.db.execute(sql, args).fetchone()

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self._q1("SELECT value FROM meta WHERE key = ?", (key,))
        return default if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- folders ---------------------------------------------------------------------------------------
    def folder(self, folder_id: int) -> FolderRec | None:
        row = self._q1("SELECT id, parent, name, create_time, password, shared, shares FROM folders WHERE id = ?",
                       (folder_id,))
        return None if row is None else _folder(row)

    def subfolders(self, folder_id: int) -> list[FolderRec]:
        rows = self.db.execute(
            "SELECT id, parent, name, create_time, password, shared, shares FROM folders WHERE parent = ? ORDER BY id",
            (folder_id,),
        )
        return [_folder(r) for r in rows]

    def subfolder_named(self, parent: int, name: str) -> FolderRec | None:
        row = self._q1(
            "SELECT id, parent, name, create_time, password, shared, shares FROM folders WHERE parent = ? AND name = ?",
            (parent, name),
        )
        return None if row is None else _folder(row)

    def folder_path(self, folder_id: int | None) -> str:
        """``"A/B"`` for folder B inside A; "" for the root (file/info ``path``, §2.4) [UNVERIFIED format]."""
        parts: list[str] = []
        f = self.folder(folder_id) if folder_id is not None else None
        while f is not None and f.id != 0:
            parts.append(f.name)
            f = self.folder(f.parent) if f.parent is not None else None
        return "/".join(reversed(parts))

    def is_descendant(self, folder_id: int, ancestor: int) -> bool:
        f = self.folder(folder_id)
        while f is not None:
            if f.id == ancestor:
                return True
            f = self.folder(f.parent) if f.parent is not None else None
        return False

    def make_folder(self, parent: int, name: str) -> int:
        fid = int(self.get_meta("next_folder_id", str(FIRST_FOLDER_ID)) or FIRST_FOLDER_ID)
        self.db.execute("BEGIN")
        try:
            self.db.execute("INSERT INTO folders (id, parent, name, create_time) VALUES (?, ?, ?, ?)",
                            (fid, parent, name, self._wall()))
            self.set_meta("next_folder_id", str(fid + 1))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return fid

    def update_folder(self, folder_id: int, **fields: Any) -> None:
        for key, value in fields.items():
            if key == "shares":
                value = json.dumps(value)
            assert key in {"parent", "name", "password", "shared", "shares"}
            self.db.execute(f"UPDATE folders SET {key} = ? WHERE id = ?", (value, folder_id))

    def delete_folder(self, folder_id: int) -> None:
        self.db.execute("DELETE FROM folders WHERE id = ?", (folder_id,))

    def folder_is_empty(self, folder_id: int) -> bool:
        return (self._q1("SELECT 1 FROM folders WHERE parent = ? LIMIT 1", (folder_id,)) is None
                and self._q1("SELECT 1 FROM files WHERE folder_id = ? LIMIT 1", (folder_id,)) is None)

    # -- files -----------------------------------------------------------------------------------------
    def file(self, file_id: str) -> FileRec | None:
        row = self._q1(f"SELECT {_FILE_COLS} FROM files WHERE id = ?", (file_id,))
        return None if row is None else _file(row)

    def files_in(self, folder_id: int) -> list[FileRec]:
        """Files of one folder by upload date (oldest first); ``-1`` = every file of the account (§2.3)."""
        if folder_id == -1:
            rows = self.db.execute(
                f"SELECT {_FILE_COLS} FROM files WHERE folder_id IS NOT NULL ORDER BY upload_time, seq")
        else:
            rows = self.db.execute(
                f"SELECT {_FILE_COLS} FROM files WHERE folder_id = ? ORDER BY upload_time, seq", (folder_id,))
        return [_file(r) for r in rows]

    def iter_all_files(self) -> Iterator[FileRec]:
        for r in self.db.execute(f"SELECT {_FILE_COLS} FROM files ORDER BY seq"):
            yield _file(r)

    def oldest_date(self) -> float | None:
        """The earliest upload time of any file (None for an empty account)."""
        row = self._q1("SELECT MIN(upload_time) FROM files")
        return None if row[0] is None else float(row[0])

    def used_bytes(self) -> int:
        row = self._q1("SELECT COALESCE(SUM(size), 0) FROM files WHERE folder_id IS NOT NULL")
        return int(row[0])

    def new_blob(self) -> Path:
        return self.blobs / secrets.token_hex(16)

    def blob_path(self, rec: FileRec) -> Path:
        return self.blobs / rec.blob

    def add_file(self, *, folder_id: int | None, filename: str, blob: Path, size: int, whirlpool_hex: str,
                 content_type: str, remove_code: str = "", upload_time: float | None = None) -> FileRec:
        while True:
            fid = new_file_id()
            if self.file(fid) is None:
                break
        if upload_time is None:  # wall clock, spaced from the account's latest date (config.upload_date_spacing)
            t = max(float(self._wall()), self._last_time + self._spacing)
        else:
            t = upload_time
        self._last_time = max(self._last_time, t)
        self.db.execute(
            "INSERT INTO files (id, folder_id, filename, size, whirlpool, content_type, upload_time, blob, remove_code)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (fid, folder_id, filename, size, whirlpool_hex, content_type, t, blob.name, remove_code),
        )
        rec = self.file(fid)
        assert rec is not None
        return rec

    def copy_file(self, rec: FileRec, folder_id: int, filename: str) -> FileRec:
        """A copy is a new file with a new URL (§2.8); the bytes are hard-linked when possible."""
        dst = self.new_blob()
        try:
            os.link(self.blob_path(rec), dst)
        except OSError:
            shutil.copyfile(self.blob_path(rec), dst)
        new = self.add_file(folder_id=folder_id, filename=filename, blob=dst, size=rec.size,
                            whirlpool_hex=rec.whirlpool, content_type=rec.content_type)
        self.update_file(new.id, description=rec.description, password=rec.password, no_ssl=rec.no_ssl,
                         inline=rec.inline, cdn=rec.cdn, acl=rec.acl)
        return self.file(new.id)  # type: ignore[return-value]

    def update_file(self, file_id: str, **fields: Any) -> None:
        allowed = {"folder_id", "filename", "description", "password", "no_ssl", "inline", "cdn", "acl"}
        for key, value in fields.items():
            assert key in allowed, key
            if key == "acl":
                value = json.dumps(value)
            self.db.execute(f"UPDATE files SET {key} = ? WHERE id = ?", (value, file_id))

    def delete_file(self, file_id: str) -> None:
        rec = self.file(file_id)
        if rec is None:
            return
        self.db.execute("DELETE FROM files WHERE id = ?", (file_id,))
        try:
            self.blob_path(rec).unlink()
        except FileNotFoundError:
            pass


def store_stream(src: Any, dst: Path) -> tuple[int, str]:
    """Copy a binary file object to ``dst`` chunk by chunk; returns (size in bytes, whirlpool hex)."""
    h = whirlpool.new(b"")
    size = 0
    with open(dst, "wb") as out:
        while True:
            chunk = src.read(CHUNK)
            if not chunk:
                break
            h.update(chunk)
            out.write(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def file_id_from_url(url: Any) -> str | None:
    """The id of ``https://1fichier.com/?<id>`` (also alternate domains, ``&…`` suffixes and the legacy
    ``http://<id>.1fichier.com/`` form, §7)."""
    if not isinstance(url, str):
        return None
    url = url.strip()
    q = url.find("?")
    if q >= 0:
        m = re.match(r"([a-z0-9]{5,20})(?:&|$)", url[q + 1:])
        return m.group(1) if m else None
    m = re.fullmatch(r"https?://([a-z0-9]{5,20})\.1fichier\.com/?", url)
    return m.group(1) if m else None


# -- in-memory records (kept by EmulatorService, lost on restart) --------------------------------------
@dataclass
class UploadSession:
    """One ``get_upload_server`` id (§6 step 1). A successful POST stores ``links``; the result is then kept
    for ``upload_result_ttl`` (§6 "kept for 2 h")."""

    id: str
    node: str
    created: float
    done_at: float | None = None
    links: list[dict[str, str]] = field(default_factory=list)


@dataclass
class Token:
    """A direct download link (§5)."""

    path: str
    file_id: str
    issued: float
    single: bool
    inline: bool
    gets: int = 0
