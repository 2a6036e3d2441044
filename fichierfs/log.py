"""Logging set-up: console, file, journald or syslog; per-module levels; secrets scrubbed from every record.

Where the log goes: ``--log-file F`` if given; else, in the foreground, stderr — with
sd-daemon ``<N>`` priority prefixes when stderr is systemd's journal (``$JOURNAL_STREAM``,
so ``journalctl -p warning`` works for the shipped units); else, when daemonized, syslog
(``/dev/log``, which journald reads too).

Levels: ``--log-level info,fichierfs.scheduler=debug`` (a base level, then per-module ones).
API errors are logged once each, with 1fichier's ``#code`` (:func:`api_error_line`).

Nothing secret reaches a log at any level: the API key, ``Authorization`` headers and
download-link URLs (``https://<host>/p<digits>``-style token URLs, §5) are replaced by
``<redacted>`` by :class:`RedactingFilter`, attached to every handler. httpx and httpcore
log request URLs (download links included) at INFO/DEBUG, so they are held at WARNING.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import sys
from pathlib import Path

from fichierfs.private import open_private

__all__ = ["RedactingFilter", "setup_logging", "parse_levels", "api_error_line", "JournalFormatter"]

LEVELS = ("debug", "info", "warning", "error", "critical")

_PATTERNS = [
    re.compile(r"(?i)(authorization:?\s*bearer\s+)\S+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(https?://[^/\s'\"]+/)[pc]\d{3,}[^\s'\"]*"),
    re.compile(r"(?i)([?&](?:token|key|api_key|apikey|auth)=)[^&\s'\"]+"),
]


#: A file's permanent link (§7 "Identity"): enough to download a file that has no password, so
#: it is kept out of every record above DEBUG (``--log-level debug`` is the opt-in to see them).
FILE_LINK = re.compile(r"(https?://(?:[\w-]+\.)*(?:1fichier\.com|alterupload\.com|cjoint\.net|desfichiers\.com|"
                       r"dfichiers\.com|megadl\.fr|mesfichiers\.org|piecejointe\.net|pjointe\.com|tenvoi\.com|"
                       r"dl4free\.com)/\?)[A-Za-z0-9]{5,20}")


class RedactingFilter(logging.Filter):
    """Scrub secrets from a record's final message (args are merged first).

    File links (``https://1fichier.com/?<id>``) are scrubbed from records above DEBUG.

    Args:
        secrets: literal strings to remove wherever they appear (the API key).
    """

    def __init__(self, secrets: list[str] | None = None) -> None:
        super().__init__()
        self.secrets = [s for s in (secrets or []) if s]

    def scrub(self, text: str, *, links: bool = False) -> str:
        """Remove secrets from ``text``; with ``links``, file links too."""
        for s in self.secrets:
            text = text.replace(s, "<redacted>")
        for pat in _PATTERNS:
            text = pat.sub(lambda m: m.group(1) + "<redacted>", text)
        if links:
            text = FILE_LINK.sub(lambda m: m.group(1) + "<link>", text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        links = record.levelno > logging.DEBUG
        clean = self.scrub(msg, links=links)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text, links=links)
        if clean != msg or record.args:
            record.msg, record.args = clean, None
        return True


def parse_levels(level: str) -> tuple[str, dict[str, str]]:
    """``"info,fichierfs.scheduler=debug"`` → ``("info", {"fichierfs.scheduler": "debug"})``.

    Raises:
        ValueError: an unknown level name (the message lists the valid ones; the CLI turns
            it into a ConfigError: log sits below errors in the layering).
    """
    base = "info"
    per_module: dict[str, str] = {}
    for p in (p.strip() for p in level.split(",")):
        if not p:
            continue
        name, _, lvl = p.rpartition("=")
        lvl = lvl.strip().lower()
        if lvl not in LEVELS:
            raise ValueError(f"log level {lvl!r} unknown: use {', '.join(LEVELS)} (per module: fichierfs.reader=debug)")
        if name:
            per_module[name.strip()] = lvl
        else:
            base = lvl
    return base, per_module


class JournalFormatter(logging.Formatter):
    """``<N>module: message`` for stderr read by journald (sd-daemon(3) priority prefixes)."""

    _PRIO = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prio = self._PRIO.get(record.levelno, 6 if record.levelno >= logging.INFO else 7)
        text = super().format(record)
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines() or [""])


def _stderr_is_journal() -> bool:
    """True when stderr is the journal stream systemd handed us (``$JOURNAL_STREAM`` = dev:ino)."""
    want = os.environ.get("JOURNAL_STREAM", "")
    if not want:
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return want == f"{st.st_dev}:{st.st_ino}"


def api_error_line(exc: BaseException, endpoint: str | None = None, attempt: int | None = None) -> str:
    """One log line for an API error: endpoint, 1fichier's ``#code``, HTTP status, message.

    ``ApiError`` keeps ``.code``/``.http_status``/``.endpoint``; other errors (transport, bad
    reply) give their class name, so every line says what happened and where.
    """
    ep = endpoint or getattr(exc, "endpoint", "") or "?"
    code = getattr(exc, "code", None)
    http = getattr(exc, "http_status", 0)
    tag = f"#{code}" if code is not None else type(exc).__name__
    msg = getattr(exc, "message", "") or str(exc)
    extra = f", HTTP {http}" if http else ""
    tries = f", attempt {attempt}" if attempt else ""
    return f"API error {tag} on {ep}{extra}{tries}: {msg}"


def setup_logging(level: str = "info", log_file: Path | None = None, *, syslog: bool = False,
                  secrets: list[str] | None = None) -> None:
    """Configure the root logger.

    Args:
        level: ``"debug"``/``"info"``/… optionally followed by ``,module=level`` pairs,
            e.g. ``"info,fichierfs.scheduler=debug"``.
        log_file: append to this file; else syslog when ``syslog`` (daemon), else stderr
            (journald-formatted when stderr is the journal).
        secrets: literal strings scrubbed from every record.

    Raises:
        ValueError: an unknown level name.
    """
    base, per_module = parse_levels(level)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler: logging.Handler
    formatter: logging.Formatter
    if log_file is not None:
        os.close(open_private(Path(log_file), os.O_WRONLY | os.O_APPEND | os.O_CREAT))  # 0600, even if it existed
        handler = logging.FileHandler(log_file)
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    elif syslog and Path("/dev/log").exists():
        handler = logging.handlers.SysLogHandler(address="/dev/log", facility=logging.handlers.SysLogHandler.LOG_DAEMON)
        formatter = logging.Formatter("fichierfs[%(process)d]: %(levelname)s %(name)s: %(message)s")
    elif _stderr_is_journal():
        handler = logging.StreamHandler(sys.stderr)
        formatter = JournalFormatter()
    else:
        handler = logging.StreamHandler(sys.stderr)
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(formatter)
    handler.addFilter(RedactingFilter(secrets))
    root.addHandler(handler)
    root.setLevel(base.upper())
    for name in ("httpx", "httpcore", "hpack", "hypercorn"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name, lvl in per_module.items():
        logging.getLogger(name).setLevel(lvl.upper())
