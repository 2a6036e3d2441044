"""Client side of the control commands: ``status``, ``sync`` and ``umount --wait``.

A live mount publishes one JSON document at the xattr ``user.fichierfs.status`` on its root
(:data:`fichierfs.vfs.STATUS_XATTR`): ``api`` (the scheduler's statistics), ``meta``,
``reader`` and, once the write side is present, ``writeback``::

    {"pending": int, "pending_bytes": int, "uploading": [{"path", "bytes_done", "size"}],
     "uploaded_files": int, "uploaded_bytes": int, "rate": float, "failed": int,
     "errors": [{"path", "error", "attempts"}], "journal": int}

A missing ``writeback`` means nothing is pending. Everything here works on a plain ``dict``
(:func:`summarize`, :func:`render_status`, :func:`wait_drained`) so it is tested with fake
documents; only :func:`read_status` and :func:`fichierfs_mounts` touch the system.

Layering: imports nothing from fichierfs but :mod:`fichierfs.errors` (no FUSE, no trio).
"""

from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fichierfs.errors import ConfigError, MountGone

if TYPE_CHECKING:  # rich is imported only where it draws (keeps `fichierfs status --json` light)
    from rich.console import Console

__all__ = [
    "STATUS_XATTR",
    "CONTROL_XATTR",
    "person_error",
    "Backlog",
    "MountGone",
    "fichierfs_mounts",
    "read_status",
    "summarize",
    "render_status",
    "wait_drained",
    "human_bytes",
    "send_control",
]

STATUS_XATTR = "user.fichierfs.status"
CONTROL_XATTR = "user.fichierfs.control"
"""Write ``retry-now`` to it on the mount root: failed uploads are tried again at once."""
"""Same name as :data:`fichierfs.vfs.STATUS_XATTR` (not imported: keeps ``fichierfs status`` light)."""
FSTYPE = "fuse.fichierfs"


def fichierfs_mounts(mounts_file: str = "/proc/self/mounts") -> list[Path]:
    """Mount points of every fichierfs mount of this mount namespace, in mount order."""
    out: list[Path] = []
    try:
        with open(mounts_file) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == FSTYPE:
                    out.append(Path(parts[1].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")))
    except OSError:
        pass
    return out


def read_status(mountpoint: Path) -> dict[str, Any]:
    """The status document of the mount at ``mountpoint``.

    Raises:
        MountGone: not a fichierfs mount (no such xattr), or the mount died (ENOTCONN).
    """
    try:
        raw = os.getxattr(mountpoint, STATUS_XATTR)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOENT):
            raise MountGone(f"{mountpoint} is not a fichierfs mount") from None
        if exc.errno == errno.ENOTCONN:
            raise MountGone(f"{mountpoint}: the mount's daemon is gone (run 'fusermount3 -u {mountpoint}')") from None
        raise MountGone(f"{mountpoint}: {exc.strerror}") from None
    try:
        doc = json.loads(raw)
    except ValueError:
        raise MountGone(f"{mountpoint}: unreadable status document") from None
    return doc if isinstance(doc, dict) else {}


CONTROL_XATTRS = {"refresh": "user.fichierfs.refresh", "refresh-recursive": "user.fichierfs.refresh-recursive",
                  "forget": "user.fichierfs.forget"}
"""Commands sent by reading an xattr on a path of the mount (fichierfs.vfs.CONTROL_XATTRS)."""


def send_control(path: Path, command: str) -> dict[str, Any]:
    """``fichierfs refresh [-r] PATH`` / ``fichierfs forget PATH``: run ``command`` on ``path``.

    Raises:
        MountGone: ``path`` is not on a fichierfs mount, or the mount died.
        ConfigError: the mount refused the command (the message says why).
    """
    try:
        raw = os.getxattr(path, CONTROL_XATTRS[command])
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise MountGone(f"{path} is not on a fichierfs mount") from None
        if exc.errno == errno.ENOTCONN:
            raise MountGone(f"{path}: the mount's daemon is gone") from None
        if exc.errno == errno.EAGAIN:
            raise ConfigError(f"{path}: 1fichier's rate limits refused the listing for now; try again later") from None
        raise ConfigError(f"{path}: {exc.strerror}") from None
    try:
        doc = json.loads(raw)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def human_bytes(n: float | int | None) -> str:
    """``1536`` → ``"1.5 KiB"`` (binary units, like the options)."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


@dataclass
class Backlog:
    """What is left to upload, from a status document (a missing ``writeback`` is an empty backlog)."""

    pending: int = 0
    """Everything not done yet (journal entries): ``drained`` is ``pending == 0``."""
    pending_files: int = 0
    """Files to upload (in flight included): the one count shown as "file(s)" by status and sync."""
    pending_changes: int = 0
    """Other changes: deletes, moves, folder creations and removals."""
    pending_bytes: int = 0
    uploading: list[dict[str, Any]] = field(default_factory=list)
    uploaded_files: int = 0
    uploaded_bytes: int = 0
    rate: float = 0.0
    failed: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    journal: int = 0
    blocked: str | None = None
    """Why nothing can upload now (the account is full), or None."""
    blocked_files: list[str] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    batches: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Backlog:
        wb = doc.get("writeback") or {}

        def num(key: str) -> int:
            try:
                return int(wb.get(key) or 0)
            except (TypeError, ValueError):
                return 0

        try:
            rate = float(wb.get("rate") or 0.0)
        except (TypeError, ValueError):
            rate = 0.0
        pending = num("pending")
        files = num("pending_files") if "pending_files" in wb else pending  # an older mount's document
        return cls(
            pending=pending,
            pending_files=files,
            pending_changes=num("pending_changes") if "pending_changes" in wb else max(0, pending - files),
            pending_bytes=num("pending_bytes"),
            uploading=[u for u in wb.get("uploading") or [] if isinstance(u, dict)],
            uploaded_files=num("uploaded_files"),
            uploaded_bytes=num("uploaded_bytes"),
            rate=rate,
            failed=num("failed"),
            errors=[e for e in wb.get("errors") or [] if isinstance(e, dict)],
            journal=num("journal"),
            blocked=_blocked(wb),
            blocked_files=[str(f) for f in ((wb.get("over_quota") or {}).get("files") or [])],
            refused=[r for r in wb.get("refused") or [] if isinstance(r, dict)],
            batches=[b for b in wb.get("batches") or [] if isinstance(b, dict)],
        )

    @property
    def drained(self) -> bool:
        """Nothing waits and nothing is on its way."""
        return self.pending == 0 and not self.uploading

    def left_text(self) -> str:
        """``3 file(s) and 2 other change(s)`` (the counts status and sync show)."""
        text = f"{self.pending_files} file(s)"
        if self.pending_changes:
            text += f" and {self.pending_changes} other change(s)"
        return text

    @property
    def in_flight_bytes(self) -> int:
        return sum(int(u.get("bytes_done") or 0) for u in self.uploading)


def _blocked(wb: dict[str, Any]) -> str | None:
    oq = wb.get("over_quota")
    if not isinstance(oq, dict) or not oq:
        return None
    return f"the 1fichier account is full ({oq.get('reason', 'over quota')}): {len(oq.get('files') or [])} file(s) wait"


_WORDS = (
    ("quota", "the account is full"),
    ("not enough space", "the account is full"),
    ("connecterror", "1fichier could not be reached"),
    ("connection failed", "1fichier could not be reached"),
    ("time-out", "1fichier did not answer in time"),
    ("flood", "1fichier's rate limit (flood lock); waiting it out"),
    ("nom de fichier", "1fichier refuses this name"),
    ("file name", "1fichier refuses this name"),
    ("http 5", "1fichier had a server error"),
    ("no links", "1fichier's upload report was empty; checking the folder"),
    ("not json", "1fichier answered a web page instead of data"),
    ("html", "1fichier answered a web page instead of data"),
    ("not found", "it no longer exists on 1fichier"),
    ("local:", "a local disk error"),
)


def person_error(error: str) -> str:
    """A failure in a person's words (one short line), keeping the technical text short."""
    text = " ".join(str(error).split())
    low = text.lower()
    for key, words in _WORDS:
        if key in low:
            return words
    return text[:120]


def _item(e: dict[str, Any]) -> str:
    """``upload of rm [...] failed`` → ``delete of 3 file(s)``, in a person's words."""
    path = str(e.get("path", "?"))
    for kind, verb in (("rm ", "delete of "), ("mv ", "move of "), ("rmdir ", "removal of folder "),
                       ("dmv ", "move of folder ")):
        if path.startswith(kind):
            rest = path[len(kind):]
            if rest.startswith("["):
                n = rest.count(",") + 1
                return f"{verb}{n} file(s)"
            return verb + rest
    return path


def summarize(doc: dict[str, Any]) -> dict[str, Any]:
    """The handful of numbers a person (or a script) wants first, from a status document."""
    api = doc.get("api") or {}
    reader = doc.get("reader") or {}
    b = Backlog.of(doc)
    calls = api.get("calls") or {}
    return {
        "pending": b.pending,
        "pending_files": b.pending_files,
        "pending_changes": b.pending_changes,
        "pending_bytes": b.pending_bytes,
        "uploading": len(b.uploading),
        "failed": b.failed,
        "last_error": (b.errors[-1] if b.errors else None),
        "api_calls": int(sum(v for v in calls.values() if isinstance(v, (int, float)))),
        "breaker": api.get("breaker", "closed"),
        "calls_left_this_minute": api.get("calls_left_this_minute"),
        "downloaded_bytes": reader.get("downloaded_bytes", 0),
        "coordinator": _coordinator_line(api.get("coordinator")),
    }


def _coordinator_line(c: Any) -> str:
    """``host (ok)``, ``redis redis://h:6379/0 (fallback: conservative local budget)``, ``none``."""
    if not isinstance(c, dict):
        return "none"
    where = c.get("url") or ""
    state = str(c.get("state", "ok"))
    if state == "fallback":
        state = "fallback: coordinator unreachable, conservative local budget"
        if c.get("kind") == "redis":
            state += "; downloads unguarded, a #887 refusal is waited out"
    return " ".join(p for p in (str(c.get("kind", "?")), where, f"({state})") if p)


def _eta(remaining: float, rate: float, blocked: bool = False) -> str:
    """Time left at ``rate``; "-" when there is no meaningful rate (none measured yet, or
    nothing can upload now) or the estimate is beyond a day (not an estimate any more)."""
    if remaining <= 0:
        return "0 s"
    if blocked or rate <= 0:
        return "-"
    s = int(remaining / rate)
    if s > 86400:
        return "-"
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s} s"


def render_status(doc: dict[str, Any], mountpoint: Path | str | None = None, *, verbose: bool = False) -> Any:
    """A rich renderable of a status document, readable at a glance.

    One headline (uploads state, flood breaker), then Uploads, Uploading now and Last errors
    (when there are any), API calls per endpoint, Budget and Caches. ``verbose`` adds every
    counter of ``meta`` and ``reader``.
    """
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    api = doc.get("api") or {}
    reader = doc.get("reader") or {}
    meta = doc.get("meta") or {}
    b = Backlog.of(doc)
    parts: list[Any] = []

    breaker = str(api.get("breaker", "closed"))
    style = {"closed": "green", "half-open": "yellow", "open": "bold red"}.get(breaker, "")
    head = Text()
    if mountpoint:
        head.append(f"{mountpoint}: ", style="bold")
    if b.drained:
        head.append("everything uploaded" if "writeback" in doc else "nothing to upload (read side only)",
                    style="green")
    else:
        head.append(f"{b.pending_files} file(s), {human_bytes(b.pending_bytes)} to upload", style="bold yellow")
        if b.pending_changes:
            head.append(f", {b.pending_changes} other change(s)", style="yellow")
        stuck = b.blocked is not None or api.get("connection") == "unreachable"
        eta = _eta(b.pending_bytes - b.in_flight_bytes, b.rate, stuck)
        if eta != "-":
            head.append(f" (ETA {eta})")
    if b.blocked:
        head.append(f", stopped: {b.blocked}", style="bold red")
    if b.failed:
        head.append(f", {b.failed} failed (kept, retried)", style="red")
    if b.refused:
        head.append(f", {len(b.refused)} refused by 1fichier (kept locally)", style="red")
    head.append(" · API ")
    if api.get("connection") == "unreachable":
        head.append(f"unreachable for {float(api.get('unreachable_for') or 0):.0f} s", style="bold red")
    else:
        head.append(breaker if breaker != "closed" else "ok", style=style)
    if breaker != "closed" and api.get("breaker_closes_in"):
        head.append(f", flood lock: resumes in {float(api['breaker_closes_in']):.0f} s", style=style)
    coord = api.get("coordinator")
    if isinstance(coord, dict) and coord.get("state") == "fallback":
        where = coord.get("url") or coord.get("kind", "?")
        head.append(f" · coordinator {where} unreachable: conservative local budget", style="bold yellow")
    partial = [f for f in (meta.get("incomplete") or []) if isinstance(f, dict)]
    if partial:
        head.append(f" · {len(partial)} folder(s) still being listed (5,000 files or more)", style="bold yellow")
    parts.append(head)
    if partial:
        t = Table(title="Folders still being listed: ls shows only the files known so far", box=box.SIMPLE,
                  title_justify="left")
        t.add_column("folder")
        t.add_column("files known so far", justify="right")
        t.add_column("windows done", justify="right")
        t.add_column("next window in", justify="right")
        for f in partial:
            t.add_row(str(f.get("path", "?")), str(f.get("known", "?")),
                      str(f.get("windows", 0)),
                      "failed: re-listed at its next use" if f.get("failed")
                      else f"{float(f.get('next_window_in') or 0):.0f} s")
        parts.append(t)

    def grid(title: str, rows: list[tuple[str, str]]) -> Table:
        t = Table(title=title, box=box.SIMPLE, title_justify="left", show_header=False, padding=(0, 2))
        t.add_column(style="dim")
        t.add_column(justify="right", overflow="fold")  # a value is never cut ("redis://127.0.0.1:…")
        t.add_column(style="dim")
        t.add_column(justify="right", overflow="fold")
        for i in range(0, len(rows), 2):
            a, c = rows[i], rows[i + 1] if i + 1 < len(rows) else ("", "")
            t.add_row(a[0], a[1], c[0], c[1])
        return t

    if "writeback" in doc:
        parts.append(grid("Uploads", [
            ("pending", f"{b.pending_files} file(s)"), ("pending bytes", human_bytes(b.pending_bytes)),
            ("other changes", str(b.pending_changes)), ("", ""),
            ("uploaded", f"{b.uploaded_files} file(s)"), ("uploaded bytes", human_bytes(b.uploaded_bytes)),
            ("rate", f"{human_bytes(b.rate)}/s" if b.rate else "-"),
            ("ETA", _eta(b.pending_bytes - b.in_flight_bytes, b.rate, b.blocked is not None)),
            ("failed", str(b.failed)), ("journal", str(b.journal)),
        ]))

    if b.uploading:
        t = Table(title="Uploading now (one POST per batch)", box=box.SIMPLE, title_justify="left")
        t.add_column("files")
        t.add_column("done", justify="right")
        t.add_column("size", justify="right")
        t.add_column("%", justify="right")
        for u in b.uploading:
            size, done = int(u.get("size") or 0), int(u.get("bytes_done") or 0)
            t.add_row(str(u.get("path", "?")), human_bytes(done), human_bytes(size),
                      f"{100 * done / size:.0f}" if size else "-")
        parts.append(t)

    if b.errors or b.refused:
        t = Table(title="Failing (kept, retried)", box=box.SIMPLE, title_justify="left")
        t.add_column("what")
        t.add_column("why", style="red")
        t.add_column("attempts", justify="right")
        for e in b.errors[-10:]:
            t.add_row(_item(e), person_error(str(e.get("error", ""))), str(e.get("attempts", "")))
        for r in b.refused[-10:]:
            t.add_row(str(r.get("path", "?")), "refused by 1fichier, kept locally (rename it to retry)", "-")
        parts.append(t)

    calls = {k: v for k, v in (api.get("calls") or {}).items() if isinstance(v, (int, float))}
    errors = {k: v for k, v in (api.get("errors") or {}).items() if isinstance(v, (int, float))}
    t = Table(title="API calls this session", box=box.SIMPLE, title_justify="left")
    t.add_column("endpoint")
    t.add_column("calls", justify="right")
    t.add_column("errors", justify="right")
    for name in sorted(set(calls) | set(errors)):
        t.add_row(name, str(calls.get(name, 0)), str(errors.get(name, "")))
    t.add_row("total", str(sum(calls.values())), str(sum(errors.values()) or ""), style="bold")
    parts.append(t)

    queued = api.get("queued") or {}
    nxt = api.get("next_call_in")
    parts.append(grid("Budget", [
        ("flood breaker", breaker), ("flood locks seen", str(api.get("breaker_opens", 0))),
        ("calls left this minute", str(api.get("calls_left_this_minute", "-"))),
        ("next call in", f"{float(nxt):.1f} s" if isinstance(nxt, (int, float)) else "-"),
        ("waiting calls", str(sum(v for v in queued.values() if isinstance(v, int)))),
        ("retries", str(api.get("retries", 0))),
        ("shared with", _coordinator_line(api.get("coordinator"))),
    ]))

    cache = reader.get("cache") or {}
    disk = reader.get("disk")
    disk_rows = [("disk cache", f"{human_bytes(disk.get('cached_bytes'))} / {human_bytes(disk.get('limit'))}"),
                 ("disk cache hits", str(disk.get("hits", "-")))] if isinstance(disk, dict) else []
    parts.append(grid("Caches", [
        ("folders listed", str(meta.get("folders_listed", "-"))), ("entries", str(meta.get("inodes", "-"))),
        ("download links", str(reader.get("token_calls", "-"))),
        ("downloaded", human_bytes(reader.get("downloaded_bytes"))),
        ("memory cache", f"{human_bytes(cache.get('cached_bytes'))} / {human_bytes(cache.get('budget'))} "
                         "(¾ of --memory-budget; random reads and the disk cache's queue have the rest)"),
        ("open files", str(reader.get("open_handles", "-"))),
        *disk_rows,
    ]))
    if verbose:
        rest = Table(title="All counters", box=box.SIMPLE, title_justify="left", show_header=False)
        rest.add_column(style="dim")
        rest.add_column(justify="right")
        for section in sorted(k for k in doc if k not in ("api", "writeback")):
            if isinstance(doc[section], dict):
                for k, v in _flat(doc[section], section):
                    rest.add_row(k, str(v))
        parts.append(rest)
    return Group(*parts)


def _flat(d: dict[str, Any], prefix: str) -> Iterable[tuple[str, Any]]:
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flat(v, f"{prefix}.{k}")
        elif not isinstance(v, list):
            yield f"{prefix}.{k}", v


def wait_drained(
    fetch: Callable[[], dict[str, Any]],
    *,
    console: Console | None = None,
    interval: float = 0.5,
    timeout: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    progress: bool = True,
) -> Backlog:
    """Poll ``fetch()`` until nothing is pending, with a rich progress bar (files, bytes, rate, ETA).

    Args:
        fetch: returns the current status document (:func:`read_status` bound to a mount).
        console: a ``rich.console.Console`` (default: stderr).
        timeout: give up after this many seconds (None: wait as long as it takes).

    Returns:
        The last backlog (``.drained`` is False after a time-out, or at once when uploads
        are stopped: ``.blocked`` says why, e.g. the account is full).

    Raises:
        MountGone: the mount went away while waiting.
    """
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    console = console or Console(stderr=True)
    first = Backlog.of(fetch())
    if first.drained or first.blocked:
        return first
    files0, bytes0 = first.uploaded_files, first.uploaded_bytes
    start = clock()
    columns = [TextColumn("[bold]uploading[/bold] {task.description} files"), BarColumn(),
               DownloadColumn(binary_units=True), TransferSpeedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    shown_errors: set[tuple[str, str]] = set()
    b = first
    with Progress(*columns, console=console, transient=False, disable=not progress) as bar:
        task = bar.add_task("sync", total=None)
        while True:
            done_files = max(0, b.uploaded_files - files0)
            done_bytes = max(0, b.uploaded_bytes - bytes0) + b.in_flight_bytes
            total_bytes = max(0, b.uploaded_bytes - bytes0) + b.pending_bytes
            # Files and bytes on one bar: bytes drive it, files are in the description.
            desc = f"{done_files}/{done_files + b.pending_files}"
            if b.pending_changes:
                desc += f" + {b.pending_changes} other change(s)"
            if b.batches:
                files_in = sum(int(x.get("files") or 0) for x in b.batches)
                bytes_in = sum(int(x.get("bytes") or 0) for x in b.batches)
                desc += f" (in flight: {len(b.batches)} batch(es), {files_in} file(s), {human_bytes(bytes_in)})"
            bar.update(task, completed=done_bytes, total=max(total_bytes, done_bytes), description=desc)
            for e in b.errors:
                k = (_item(e), person_error(str(e.get("error"))))
                if k not in shown_errors:
                    shown_errors.add(k)
                    bar.console.print(f"[red]{k[0]}: {k[1]}[/red] (kept, retried)")
            if b.blocked:
                return b
            if b.drained:
                bar.update(task, completed=done_bytes, total=done_bytes)  # "0/0 bytes" after deletes only
                return b
            if timeout is not None and clock() - start >= timeout:
                return b
            sleep(interval)
            b = Backlog.of(fetch())
