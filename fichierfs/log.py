"""Logging set-up: console, file or syslog; per-module levels; secrets scrubbed from every record.

Nothing secret reaches a log at any level: the API key, ``Authorization`` headers and
download-link URLs (``https://<host>/p<digits>``-style token URLs, §5) are replaced by
``<redacted>`` by :class:`RedactingFilter`, attached to every handler. httpx and httpcore
log request URLs (download links included) at INFO/DEBUG, so they are held at WARNING.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys
from pathlib import Path

__all__ = ["RedactingFilter", "setup_logging"]

_PATTERNS = [
    re.compile(r"(?i)(authorization:?\s*bearer\s+)\S+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(https?://[^/\s'\"]+/)[pc]\d{3,}[^\s'\"]*"),
]


class RedactingFilter(logging.Filter):
    """Scrub secrets from a record's final message (args are merged first).

    Args:
        secrets: literal strings to remove wherever they appear (the API key).
    """

    def __init__(self, secrets: list[str] | None = None) -> None:
        super().__init__()
        self.secrets = [s for s in (secrets or []) if s]

    def scrub(self, text: str) -> str:
        for s in self.secrets:
            text = text.replace(s, "<redacted>")
        for pat in _PATTERNS:
            text = pat.sub(lambda m: m.group(1) + "<redacted>", text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = self.scrub(msg)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        if clean != msg or record.args:
            record.msg, record.args = clean, None
        return True


def setup_logging(level: str = "info", log_file: Path | None = None, *, syslog: bool = False,
                  secrets: list[str] | None = None) -> None:
    """Configure the root logger.

    Args:
        level: ``"debug"``/``"info"``/… optionally followed by ``,module=level`` pairs,
            e.g. ``"info,fichierfs.scheduler=debug"``.
        log_file: append to this file; else syslog when ``syslog`` (daemon), else stderr.
        secrets: literal strings scrubbed from every record.
    """
    parts = [p.strip() for p in level.split(",") if p.strip()]
    base = "info"
    per_module: dict[str, str] = {}
    for p in parts:
        if "=" in p:
            k, v = p.split("=", 1)
            per_module[k.strip()] = v.strip()
        else:
            base = p
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler: logging.Handler
    if log_file is not None:
        handler = logging.FileHandler(log_file)
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    elif syslog and Path("/dev/log").exists():
        handler = logging.handlers.SysLogHandler(address="/dev/log")
        fmt = "fichierfs[%(process)d]: %(levelname)s %(name)s: %(message)s"
    else:
        handler = logging.StreamHandler(sys.stderr)
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    handler.addFilter(RedactingFilter(secrets))
    root.addHandler(handler)
    root.setLevel(base.upper())
    for name in ("httpx", "httpcore", "hpack", "hypercorn"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name, lvl in per_module.items():
        logging.getLogger(name).setLevel(lvl.upper())
