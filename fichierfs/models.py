"""Wire models: frozen dataclasses for the replies of the 1fichier API.

Sizes are bytes (int), times are timezone-aware UTC ``datetime`` converted from 1fichier's
zone-less Paris time (``"YYYY-MM-DD HH:MM:SS"`` in CET/CEST, docs/1fichier-api.md §7).
Folder ids are ints (root = 0, §7); files are identified by their download ``url`` (§7).

Each ``from_json`` is lenient about the number/string choice of a field (``"14"`` and ``14``
both give 14) because sources disagree (§2.1: jd parses ``offer``/``cdn`` leniently) and a
mount must not die over it; it is strict about the fields it needs (``KeyError``/``ValueError``
become :class:`fichierfs.errors.BadReply` in the client).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NewType
from zoneinfo import ZoneInfo

__all__ = [
    "FolderId",
    "FileUrl",
    "PARIS",
    "paris_to_utc",
    "AccountInfo",
    "RemoteFolder",
    "RemoteFile",
    "FolderListing",
    "DownloadLink",
    "UploadServer",
    "UploadedFile",
    "RenameResult",
    "CopyResult",
]

FolderId = NewType("FolderId", int)
"""A 1fichier folder id (root = 0; §7). Never mixed up with an inode number."""
FileUrl = NewType("FileUrl", str)
"""A 1fichier file's identity: its download URL ``https://1fichier.com/?<id>`` (§7)."""

PARIS = ZoneInfo("Europe/Paris")


def paris_to_utc(text: str | None) -> datetime | None:
    """Convert 1fichier's ``"YYYY-MM-DD HH:MM:SS"`` Paris time (§7) to an aware UTC datetime.

    Returns None for None, an empty string or a 1970/0000 placeholder. In the ambiguous hour
    at the end of summer time the earlier (CEST) reading is taken.
    """
    if not text or text.startswith(("0000", "1970")):
        return None
    local = datetime.strptime(text.strip(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=PARIS)
    return local.astimezone(timezone.utc)


def _int(value: Any, default: int = 0) -> int:
    """An int from a JSON number, numeric string or null (lenient; see module docstring)."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return int(value)
    return int(float(str(value)))


def _str(value: Any) -> str:
    return "" if value is None else str(value)


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """Reply of ``user/info`` (§2.1). Storage in bytes.

    ``used``/``total``/``free`` follow rclone's reading: used = ``cold_storage``,
    total = ``available_cold_storage`` (§2.1).
    """

    email: str
    offer: int
    hot_storage: int
    cold_storage: int
    available_cold_storage: int
    allowed_cold_storage: int
    available_storage: int
    subscription_end: datetime | None
    upload_forbidden: bool

    @property
    def used(self) -> int:
        return self.cold_storage

    @property
    def total(self) -> int:
        return self.available_cold_storage

    @property
    def free(self) -> int:
        return max(0, self.available_cold_storage - self.cold_storage)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> AccountInfo:
        return cls(
            email=_str(d.get("email")),
            offer=_int(d.get("offer")),
            hot_storage=_int(d.get("hot_storage")),
            cold_storage=_int(d.get("cold_storage")),
            available_cold_storage=_int(d.get("available_cold_storage")),
            allowed_cold_storage=_int(d.get("allowed_cold_storage")),
            available_storage=_int(d.get("available_storage")),
            subscription_end=paris_to_utc(d.get("subscription_end") or None),
            upload_forbidden=_str(d.get("upload_forbidden")) not in ("", "0"),
        )


@dataclass(frozen=True, slots=True)
class RemoteFolder:
    """A sub-folder entry of ``folder/ls`` (§2.2: key ``id``, ``name``, ``create_date``, ``pass``)."""

    id: FolderId
    name: str
    create_date: datetime | None
    password: bool = False

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RemoteFolder:
        return cls(
            id=FolderId(_int(d["id"])),
            name=_str(d["name"]),
            create_date=paris_to_utc(d.get("create_date")),
            password=bool(_int(d.get("pass"))),
        )


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """A file as listed by ``folder/ls`` ``items``, ``file/ls`` or ``file/info`` (§2.2–§2.4).

    Attributes:
        url: the file's identity and download link (§7).
        filename: the remote (encoded) name.
        size: bytes.
        date: upload time, UTC (§7: ``date`` is the upload time in Paris time).
        checksum: Whirlpool, lowercase hex (§7).
        content_type: 1fichier's MIME guess (``content-type`` in listings; §2.3).
        folder_id: the containing folder when known (file/info gives it; listings imply it).
        description: free text set by ``file/chattr`` (only file/info returns it; §2.4, §2.9).
    """

    url: FileUrl
    filename: str
    size: int
    date: datetime | None
    checksum: str = ""
    content_type: str = ""
    password: bool = False
    acl: bool = False
    cdn: bool = False
    folder_id: FolderId | None = None
    description: str = ""

    @classmethod
    def from_json(cls, d: dict[str, Any], folder_id: int | None = None) -> RemoteFile:
        ctype = d.get("content-type", d.get("content_type"))
        fid = d.get("folder_id", folder_id)
        return cls(
            url=FileUrl(_str(d["url"])),
            filename=_str(d["filename"]),
            size=_int(d.get("size")),
            date=paris_to_utc(d.get("date")),
            checksum=_str(d.get("checksum")).lower(),
            content_type=sys.intern(_str(ctype)),  # a few distinct values over 100,000s of files
            password=bool(_int(d.get("pass"))),
            acl=bool(_int(d.get("acl"))) if not isinstance(d.get("acl"), dict) else True,
            cdn=bool(_int(d.get("cdn"))),
            folder_id=None if fid is None else FolderId(_int(fid)),
            description=_str(d.get("description")),
        )


@dataclass(frozen=True, slots=True)
class FolderListing:
    """Reply of ``folder/ls`` (§2.2); with ``files:1`` it also carries the files (``items``).

    ``files`` is empty when the listing was made without ``files:1``.
    """

    folder_id: FolderId
    name: str
    create_date: datetime | None
    sub_folders: tuple[RemoteFolder, ...]
    files: tuple[RemoteFile, ...]

    @classmethod
    def from_json(cls, d: dict[str, Any], requested_id: int) -> FolderListing:
        fid = _int(d.get("folder_id"), requested_id)
        return cls(
            folder_id=FolderId(fid),
            name=_str(d.get("name")),
            create_date=paris_to_utc(d.get("create_date")),
            sub_folders=tuple(RemoteFolder.from_json(x) for x in (d.get("sub_folders") or ())),
            files=tuple(RemoteFile.from_json(x, fid) for x in (d.get("items") or ())),
        )


@dataclass(frozen=True, slots=True)
class DownloadLink:
    """A temporary direct link from ``download/get_token`` (§2.15, §5).

    The link is a bearer credential for the file: it is kept out of ``repr`` and never logged.

    Attributes:
        url: the direct link (e.g. ``https://a-6.1fichier.com/p1058755667``).
        file_url: the file it serves.
        issued_at: the caller's monotonic clock (seconds) when the token was received.
        single: True if it was asked with ``single:1`` (one connection only, §5).
    """

    url: str = field(repr=False)
    file_url: FileUrl
    issued_at: float = 0.0
    single: bool = False

    def __repr__(self) -> str:
        return f"DownloadLink(file_url={self.file_url!r}, issued_at={self.issued_at}, url=<redacted>)"


@dataclass(frozen=True, slots=True)
class UploadServer:
    """Reply of ``upload/get_upload_server`` (§6.1): a node host and a 10-character upload id.

    Fetch a fresh one for every upload; never cache it (§6.1).
    """

    host: str
    id: str


@dataclass(frozen=True, slots=True)
class UploadedFile:
    """One entry of end.pl's ``links`` (§6.4). ``size`` arrives as a string; here bytes as int."""

    url: FileUrl
    filename: str
    size: int
    whirlpool: str
    remove: str = field(default="", repr=False)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> UploadedFile:
        return cls(
            url=FileUrl(_str(d["download"])),
            filename=_str(d.get("filename")),
            size=_int(d.get("size")),
            whirlpool=_str(d.get("whirlpool")).lower(),
            remove=_str(d.get("remove")),
        )


@dataclass(frozen=True, slots=True)
class RenameResult:
    """One entry of ``file/rename``'s ``urls`` (§2.7)."""

    url: FileUrl
    old_filename: str
    new_filename: str


@dataclass(frozen=True, slots=True)
class CopyResult:
    """One entry of ``file/cp``'s ``urls`` (§2.8): a copy is a new file with a new url."""

    from_url: FileUrl
    to_url: FileUrl
