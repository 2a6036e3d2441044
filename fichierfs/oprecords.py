"""Op records: the typed namespace mutations kept in the journal's ``ops`` table.

One frozen dataclass per kind of op; :func:`dump` and :func:`load` are the ONE place where
they are turned into a journal row (``kind`` + JSON ``data``) and back. The JSON keys are the
ones the journal has always held (a journal written by an older fichierfs, when ops were
plain dicts, reads the same), so an upgrade or a downgrade keeps pending work.

    ``rm``     :class:`Rm`     file/rm of remote copies (batched, docs/1fichier-api.md §2.5)
    ``mv``     :class:`Mv`     file/rename.cgi when only the name changes, file/mv.cgi otherwise
                               (§2.6, §2.7, §8.11)
    ``rmdir``  :class:`Rmdir`  folder/rm (§2.12)
    ``dmv``    :class:`Dmv`    folder/mv, one call per change (a rename ignores the destination,
                               §2.13)

Folder ids may be negative: a local folder whose ``folder/mkdir`` has not succeeded yet
(store.py ``dirs``); :func:`rebase` rewrites them once the real id is known.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

__all__ = ["Rm", "Mv", "Rmdir", "Dmv", "Op", "dump", "load", "rebase", "describe", "BadOpRecord"]


class BadOpRecord(ValueError):
    """A journal row that is no op record of a known kind (its text is in the message)."""


@dataclass(frozen=True)
class Rm:
    """Delete remote copies (file/rm). Runs of them become one call."""

    urls: tuple[str, ...]
    kind: ClassVar[str] = "rm"


@dataclass(frozen=True)
class Mv:
    """Move and/or rename the remote file ``url`` to ``folder_id``/``name`` (decoded name).

    ``from_folder``/``old_name`` are where it is now; ``size``, ``checksum`` and ``date`` let
    a replay show the file at its new place before the call is made.
    """

    url: str
    folder_id: int
    name: str
    from_folder: int
    old_name: str
    size: int = 0
    checksum: str = ""
    date: float = 0.0
    kind: ClassVar[str] = "mv"


@dataclass(frozen=True)
class Rmdir:
    """Remove the (empty) remote folder ``folder_id`` (folder/rm)."""

    folder_id: int
    kind: ClassVar[str] = "rmdir"


@dataclass(frozen=True)
class Dmv:
    """Rename and/or move the remote folder ``folder_id`` to ``parent``/``name``."""

    folder_id: int
    parent: int
    name: str
    from_parent: int
    old_name: str
    kind: ClassVar[str] = "dmv"


Op = Rm | Mv | Rmdir | Dmv

_KINDS: dict[str, type[Rm] | type[Mv] | type[Rmdir] | type[Dmv]] = {c.kind: c for c in (Rm, Mv, Rmdir, Dmv)}
_FOLDER_FIELDS = ("folder_id", "parent", "from_folder", "from_parent")


def dump(op: Op) -> tuple[str, str]:
    """The journal row of ``op``: (kind, JSON data)."""
    data: dict[str, Any] = {f.name: getattr(op, f.name) for f in fields(op)}
    if isinstance(op, Rm):
        data["urls"] = list(op.urls)
    return op.kind, json.dumps(data)


def load(kind: str, text: str) -> Op:
    """The op of a journal row (this format, or the dicts older versions wrote: the same keys,
    ``size``/``checksum``/``date`` of a move optional, numbers possibly as strings).

    Raises:
        BadOpRecord: an unknown kind or a row that lacks a required field.
    """
    cls = _KINDS.get(kind)
    try:
        data = json.loads(text)
        if cls is None or not isinstance(data, dict):
            raise TypeError(kind)
        if cls is Rm:
            urls = data["urls"]
            return Rm(tuple(str(u) for u in ([urls] if isinstance(urls, str) else urls)))
        if cls is Rmdir:
            return Rmdir(int(data["folder_id"]))
        if cls is Dmv:
            return Dmv(int(data["folder_id"]), int(data["parent"]), str(data["name"]), int(data["from_parent"]),
                       str(data["old_name"]))
        return Mv(str(data["url"]), int(data["folder_id"]), str(data["name"]), int(data["from_folder"]),
                  str(data["old_name"]), int(data.get("size") or 0), str(data.get("checksum") or ""),
                  float(data.get("date") or 0.0))
    except (KeyError, TypeError, ValueError) as exc:
        raise BadOpRecord(f"journal op {kind!r} {text[:200]!r}: {exc!r}") from None


def rebase(op: Op, local_id: int, remote_id: int) -> Op | None:
    """``op`` with the local folder ``local_id`` replaced by ``remote_id`` (None: unchanged)."""
    changes: dict[str, Any] = {k: remote_id for k in _FOLDER_FIELDS if getattr(op, k, None) == local_id}
    return replace(op, **changes) if changes else None


def describe(op: Op) -> str:
    """A short label for status lines: the kind and what it touches."""
    if isinstance(op, Rm):
        return f"rm {list(op.urls)}"
    if isinstance(op, Rmdir):
        return f"rmdir {op.folder_id}"
    return f"{op.kind} {op.name}"
