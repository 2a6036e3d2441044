"""Reversible name encoding: local names ↔ names 1fichier accepts (docs/1fichier-api.md §7).

1fichier rejects or mangles ``\\ < > " ' $ ``` ``/``, control characters and leading spaces
(§7). rclone's fichier backend encodes them with its ``lib/encoder`` (mask Slash, LtGt,
DoubleQuote, SingleQuote, BackQuote, Dollar, BackSlash, Del, Ctl, LeftSpace, RightSpace,
InvalidUtf8, Dot; §7), so we use exactly the same mapping: a tree written by rclone reads
back with the same names here, and the other way round.

* a reserved ASCII character ``c`` becomes its FULLWIDTH twin ``chr(ord(c) + 0xFEE0)``;
* control characters 0x00–0x1F become the Control Pictures ``chr(0x2400 + c)``, DEL ``␡``;
* the acute accent ``´`` (U+00B4), which 1fichier refuses too (§7, reported) but has no
  FULLWIDTH twin, becomes ``ˊ`` (U+02CA MODIFIER LETTER ACUTE ACCENT) — not in rclone's mask:
  rclone cannot upload ``´`` at all, and shows our ``ˊ`` as is;
* a leading or trailing space becomes ``␠``; the names ``.``/``..`` become ``．``/``．．``;
* a character that already *is* one of those replacements is kept by prefixing the quote
  rune ``‛`` (U+201B), and ``‛`` itself is doubled the same way, so decoding is exact.

Names that are not valid UTF-8 (bytes from the kernel that do not decode) are refused
(EINVAL) rather than encoded; rclone's InvalidUtf8 quoting is not implemented yet.
"""

from __future__ import annotations

import errno as _errno

from fichierfs.errors import BadName

__all__ = ["encode", "decode", "BadName", "NameError_", "MAX_NAME_CHARS", "MAX_NAME_BYTES"]

NameError_ = BadName
"""The old name of :class:`fichierfs.errors.BadName` (kept for imports)."""

MAX_NAME_CHARS = 250
"""Longest remote name in **characters** (§7: 250; §2.11 for folders). Counted on the encoded
name, since that is what 1fichier stores. Linux's NAME_MAX (255 bytes of UTF-8) is the limit of
local disks, not of FUSE (the kernel passes names up to 1024 bytes), so 250 "日" (750 bytes) are
accepted and round-trip, as the issue asks; copying such a file onto ext4 fails there with
ENAMETOOLONG. statfs still reports 255, what programs expect of a POSIX file system."""

MAX_NAME_BYTES = MAX_NAME_CHARS
"""Old name of :data:`MAX_NAME_CHARS` (kept for importers)."""

QUOTE = "\u201b"
_FULL = 0xFEE0
_SYMBOL = 0x2400
_RESERVED = set('/<>"\'`$\\')
_FULLWIDTH = {chr(ord(c) + _FULL) for c in _RESERVED}
_SPACE_SYM = "\u2420"  # ␠
_DEL_SYM = "\u2421"  # ␡
_DOT = "\uff0e"  # ．
_ACUTE = "\u00b4"  # ´ refused by 1fichier (§7)
_ACUTE_SYM = "\u02ca"  # ˊ its stand-in


def _needs_quote(ch: str) -> bool:
    o = ord(ch)
    return (
        ch in _FULLWIDTH
        or ch == QUOTE
        or ch == _DEL_SYM
        or ch == _ACUTE_SYM
        or _SYMBOL <= o <= _SYMBOL + 0x1F
    )


def encode(name: str) -> str:
    """Encode a local file or folder name (one path component) for 1fichier (§7).

    Raises:
        BadName: empty, not valid UTF-8 (EINVAL), or over 250 characters once encoded (ENAMETOOLONG;
            logged by the FUSE adapter with this reason).
    """
    if not name:
        raise BadName("empty name")
    if any(0xDC80 <= ord(c) <= 0xDCFF for c in name):
        raise BadName(f"name is not valid UTF-8: {name.encode('utf-8', 'surrogateescape')!r}")
    if name == ".":
        return _DOT
    if name == "..":
        return _DOT + _DOT
    if name == _DOT:
        return QUOTE + _DOT
    if name == _DOT + _DOT:
        return QUOTE + _DOT + QUOTE + _DOT
    prefix = suffix = ""
    if name[0] == " ":
        prefix, name = _SPACE_SYM, name[1:]
    elif name[0] == _SPACE_SYM:
        prefix, name = QUOTE + _SPACE_SYM, name[1:]
    if name:
        if name[-1] == " ":
            suffix, name = _SPACE_SYM, name[:-1]
        elif name[-1] == _SPACE_SYM:
            suffix, name = QUOTE + _SPACE_SYM, name[:-1]
    out = [prefix]
    for ch in name:
        o = ord(ch)
        if ch in _RESERVED:
            out.append(chr(o + _FULL))
        elif o <= 0x1F:
            out.append(chr(_SYMBOL + o))
        elif o == 0x7F:
            out.append(_DEL_SYM)
        elif ch == _ACUTE:
            out.append(_ACUTE_SYM)
        elif _needs_quote(ch):
            out.append(QUOTE + ch)
        else:
            out.append(ch)
    out.append(suffix)
    result = "".join(out)
    if len(result) > MAX_NAME_CHARS:
        shown = result[:40] + "…"
        raise BadName(
            f"name {shown!r} is {len(result)} characters once encoded for 1fichier; "
            f"1fichier allows at most {MAX_NAME_CHARS} (§7)", _errno.ENAMETOOLONG)
    return result


def decode(remote: str) -> str:
    """Decode a remote name to the local name; the inverse of :func:`encode` (§7).

    Names rclone or the web UI wrote without encoding decode to themselves unless they hold
    replacement characters; a name that would decode to something the kernel cannot show
    (``/`` or NUL) keeps the replacement.
    """
    if remote == _DOT:
        return "."
    if remote == _DOT + _DOT:
        return ".."
    out: list[str] = []
    i, n = 0, len(remote)
    while i < n:
        ch = remote[i]
        if ch == QUOTE and i + 1 < n:
            out.append(remote[i + 1])
            i += 2
            continue
        o = ord(ch)
        if ch in _FULLWIDTH and ch != "\uff0f":  # ／ stays: '/' cannot appear in a local name
            out.append(chr(o - _FULL))
        elif _SYMBOL + 1 <= o <= _SYMBOL + 0x1F:
            out.append(chr(o - _SYMBOL))
        elif ch == _DEL_SYM:
            out.append("\x7f")
        elif ch == _ACUTE_SYM:
            out.append(_ACUTE)
        elif ch == _SPACE_SYM and (i == 0 or i == n - 1):
            out.append(" ")
        else:
            out.append(ch)
        i += 1
    local = "".join(out)
    return remote if local == remote else local  # one string, not two, per known name (memory)
