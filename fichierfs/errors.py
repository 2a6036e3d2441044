"""One exception tree for all of fichierfs.

Every class knows the ``errno`` it becomes when it reaches FUSE (only ``ops.py`` turns
it into ``pyfuse3.FUSEError``) and the ``level`` at which it is logged, and whether a
retry of the same call may succeed (``retryable``)::

    FichierError                      EIO     base; never raised itself
    ├── ApiError                      EIO     1fichier answered KO (keeps .code "#NNN", .http_status)
    │   ├── FloodLocked               EAGAIN  "Flood detected: IP/User Locked #374/#412/#38/#223"  (§3, §4)
    │   ├── AuthError                 EACCES  "No such user #93/#142", "Not authenticated",
    │   │                                     "Must be a customer #200"                          (§3)
    │   ├── NotFound                  ENOENT  "Resource not found #469" (HTTP 404)               (§2.4, §3)
    │   ├── NotAllowed                EACCES  "Resource not allowed #631", "#887", "#913"        (§3)
    │   └── RequestRejected           EINVAL  any other KO: "#24", "#312", bad name, quota, …    (§3)
    ├── TransientError                EIO     may succeed when tried again
    │   ├── ServerError               EIO     HTTP 5xx, connection reset, time-out, truncated body
    │   ├── BadReply                  EIO     HTML (or garbage) where JSON was expected          (§3, §6)
    │   └── LinkExpired               EIO     a download link answered HTML, not the file        (§5)
    ├── UploadFailed                  EIO     the upload POST or end.pl did not give a file link  (§6)
    ├── NoEntry                       ENOENT  no such file or directory in the core (meta, vfs)
    ├── FsError                       (any)   a POSIX error of the core itself: ENOTDIR, EROFS, EISDIR,
    │                                         EBADF, EFBIG, ENODATA, EACCES… (errno per instance)
    ├── BadName                       EINVAL  a local name 1fichier cannot store (names.py, §7);
    │                                         ENAMETOOLONG over 250 bytes once encoded
    └── ConfigError                   EINVAL  bad option, missing or unsafe API key file
        └── MountGone                 ENOTCONN the mount point is not (or no longer) a live fichierfs
                                              mount (``fichierfs status`` / ``umount``)

Log levels: FloodLocked, TransientError, UploadFailed WARNING; AuthError, ConfigError CRITICAL;
NotFound INFO; NoEntry and FsError DEBUG (routine answers to the kernel; an FsError may be
given another level); every other class ERROR.

Messages never contain the API key, a download token URL or request headers; the
client builds every message itself from 1fichier's ``message`` field.
"""

from __future__ import annotations

import errno as _errno
import logging
import os
import re

__all__ = [
    "FichierError",
    "Incomplete",
    "ApiError",
    "FloodLocked",
    "AuthError",
    "NotFound",
    "NotAllowed",
    "RequestRejected",
    "TransientError",
    "ServerError",
    "BadReply",
    "LinkExpired",
    "UploadFailed",
    "ConfigError",
    "NoEntry",
    "FsError",
    "BadName",
    "MountGone",
    "api_error_from_reply",
    "parse_code",
]


class FichierError(Exception):
    """Base of every fichierfs error.

    Attributes:
        errno: the errno answered to the kernel when this error reaches FUSE.
        level: the ``logging`` level at which this error is logged.
        retryable: True when repeating the same call later may succeed.
    """

    errno: int = _errno.EIO
    level: int = logging.ERROR
    retryable: bool = False

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message or type(self).__name__


class ApiError(FichierError):
    """1fichier answered ``{"status":"KO","message":"… #NNN"}`` (docs/1fichier-api.md §3).

    Attributes:
        code: the trailing ``#NNN`` of the message as an int, or None when absent.
        http_status: the HTTP status of the reply (1fichier uses 403 for most errors).
        endpoint: the endpoint path, e.g. ``"folder/ls"`` (never a URL with a token).
    """

    def __init__(self, message: str, *, code: int | None = None, http_status: int = 0, endpoint: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.http_status = http_status
        self.endpoint = endpoint

    def __str__(self) -> str:
        where = f"{self.endpoint}: " if self.endpoint else ""
        return f"{where}{self.message} (HTTP {self.http_status})" if self.http_status else f"{where}{self.message}"


class FloodLocked(ApiError):
    """Rate limit crossed: ``Flood detected: IP Locked #374/#412`` (§3, §4). Back off ≥ 30 s, globally."""

    errno = _errno.EAGAIN
    level = logging.WARNING
    retryable = True
    retry_after: float | None = None
    """Seconds from now until the scheduler would let the call start (set by the scheduler)."""


class AuthError(ApiError):
    """The key is wrong, revoked or not a customer's (#93, #142, ``Not authenticated``, #200; §3). Fatal."""

    errno = _errno.EACCES
    level = logging.CRITICAL


class NotFound(ApiError):
    """``Resource not found #469`` (HTTP 404; §2.4, §3)."""

    errno = _errno.ENOENT
    level = logging.INFO


class NotAllowed(ApiError):
    """``Resource not allowed #631``, ``Only 1 location allowed #887``, ``#913`` (§3)."""

    errno = _errno.EACCES


class RequestRejected(ApiError):
    """Any other KO reply: bad request, ``#24``, ``#312``, forbidden name, quota (§3)."""

    errno = _errno.EINVAL


class TransientError(FichierError):
    """A failure that may go away when the same call is tried again later."""

    retryable = True
    level = logging.WARNING


class ServerError(TransientError):
    """HTTP 5xx, connection reset or refused, time-out, or a truncated body.

    ``reached_server`` is False when the request provably never reached 1fichier (connection
    refused / DNS / connect time-out): the scheduler then does not count it against the budgets.
    """

    reached_server: bool = True


class BadReply(TransientError):
    """The reply was not the JSON the endpoint documents (e.g. an HTML page; §3, §6 end.pl)."""


class LinkExpired(TransientError):
    """A download link answered an HTML page instead of the file: expired or invalid (§5)."""


class UploadFailed(FichierError):
    """The upload POST or end.pl did not yield a file link (§6: HTML page, no ``links``)."""

    retryable = True
    level = logging.WARNING


class ConfigError(FichierError):
    """A bad option or an unusable API key source (missing, group/world-readable file)."""

    errno = _errno.EINVAL
    level = logging.CRITICAL


class MountGone(ConfigError):
    """The mount point is not (or no longer) a live fichierfs mount (control.py, the CLI)."""

    errno = _errno.ENOTCONN
    level = logging.ERROR


class NoEntry(FichierError):
    """No such file or directory (ENOENT); logged at debug, it is routine."""

    errno = _errno.ENOENT
    level = logging.DEBUG


class Incomplete(FichierError):
    """A folder over 5,000 files is still being listed and the name is not seen yet (EAGAIN):
    never ENOENT for a file that may exist (bigfolder.py, meta.py)."""

    errno = _errno.EAGAIN
    level = logging.INFO


class FsError(FichierError):
    """A POSIX error raised by the core itself (errno given per instance; vfs.py)."""

    level = logging.DEBUG

    def __init__(self, err: int, message: str = "", level: int = logging.DEBUG) -> None:
        super().__init__(message or os.strerror(err))
        self.errno = err
        self.level = level


class BadName(FichierError):
    """A local name that cannot be stored remotely (EINVAL), or is too long (ENAMETOOLONG)."""

    errno = _errno.EINVAL
    level = logging.ERROR

    def __init__(self, message: str, err: int = _errno.EINVAL) -> None:
        super().__init__(message)
        self.errno = err


_CODE = re.compile(r"#(\d{1,4})\s*$")
_AUTH_CODES = {93, 142, 200}
_AUTH_TEXT = ("no such user", "not authenticated", "must be a customer")


def parse_code(message: str) -> int | None:
    """Return the trailing ``#NNN`` of a 1fichier message as an int, or None (§3, rclone's regex)."""
    m = _CODE.search(message.strip())
    return int(m.group(1)) if m else None


def api_error_from_reply(message: str, *, http_status: int, endpoint: str) -> ApiError:
    """Classify a KO reply into the right :class:`ApiError` subclass (§3 table of known messages).

    Args:
        message: 1fichier's ``message`` field, e.g. ``"Flood detected: IP Locked #412"``.
        http_status: the HTTP status of the reply.
        endpoint: the endpoint path, for the error text.
    """
    code = parse_code(message)
    low = message.lower()
    cls: type[ApiError] = RequestRejected
    if "flood detected" in low or ("locked" in low and code in {374, 412, 38, 223, 218}):
        cls = FloodLocked
    elif code in _AUTH_CODES or any(t in low for t in _AUTH_TEXT):
        cls = AuthError
    elif code == 469 or "not found" in low or http_status == 404:
        cls = NotFound
    elif code in {631, 887, 913, 620} or "resource not allowed" in low:
        cls = NotAllowed
    return cls(message, code=code, http_status=http_status, endpoint=endpoint)
