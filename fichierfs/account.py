"""Which 1fichier account a key opens: one identity for the journal and the API budget.

A key can be rotated (README tells users to) and is as secret as a password, so nothing on
disk is named after it. The account is named by :func:`account_id`: a hash of the API's
address and the account's e-mail from ``user/info`` (§2.1). THIS is the one function that
says "which account": the journal directory (:meth:`fichierfs.config.Options.store_dir`) and
the API-budget history are keyed by it, and so should anything else shared per account.

``user/info`` is limited to one call per 5 min per user (§4), so the answer is remembered per
key, in ``<cache root>/accounts.json`` (0600): a key fingerprint (a hash, never the key) →
the account id. Only a key never seen before costs one ``user/info``, whose answer also
serves the first ``df`` (:attr:`Identity.info`).

Journals the mount cannot prove are its own (another API address, or journals written by an
older fichierfs, keyed by the key) are found by :func:`other_journals`; the mount reports
those with pending work loudly, and ``--adopt-journal DIR`` takes one over.

Layering: above the scheduler (it calls ``user/info`` through it), below mount.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from fichierfs.api import Secret
from fichierfs.errors import FichierError
from fichierfs.models import AccountInfo
from fichierfs.private import open_private
from fichierfs.scheduler import Lane, Scheduler

__all__ = [
    "ORIGIN_FILE",
    "Identity",
    "Journal",
    "account_id",
    "account_known",
    "identify",
    "key_fingerprint",
    "legacy_key_account",
    "other_journals",
    "pending_in",
    "write_origin",
]

log = logging.getLogger(__name__)

REGISTRY = "accounts.json"
ORIGIN_FILE = "origin.json"


def account_id(api_url: str, email: str) -> str:
    """The identity of an account: a hash of the API's address and the account's e-mail (§2.1)."""
    return hashlib.sha256(f"{api_url.rstrip('/')}\0{email.strip().lower()}".encode()).hexdigest()[:32]


def key_fingerprint(api_url: str, key: Secret) -> str:
    """A name for a key that reveals nothing of it (a salted hash; never the key itself)."""
    return hashlib.sha256(f"fichierfs-key\0{api_url.rstrip('/')}\0{key.reveal()}".encode()).hexdigest()[:32]


def legacy_key_account(key: Secret) -> str:
    """What fichierfs up to 0.1 used as "account": the key's sha256 (journals found by it are migrated)."""
    return hashlib.sha256(key.reveal().encode()).hexdigest()


@dataclass(frozen=True)
class Identity:
    """Who this mount is: ``account`` (see :func:`account_id`); ``info`` when user/info was just called."""

    account: str
    info: AccountInfo | None = None


def _load_registry(root: Path) -> dict[str, Any]:
    try:
        doc = json.loads((root / REGISTRY).read_text())
        return doc if isinstance(doc, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_registry(root: Path, fingerprint: str, account: str) -> None:
    """Add ``fingerprint → account`` under an exclusive lock (several mounts may start at once)."""
    fd = open_private(root / (REGISTRY + ".lock"))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        doc = _load_registry(root)
        doc[fingerprint] = account
        tmp = root / (REGISTRY + ".tmp")
        wfd = open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        with os.fdopen(wfd, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, root / REGISTRY)
    finally:
        os.close(fd)


def registered_account(root: Path, api_url: str, key: Secret) -> str | None:
    """The account ``key`` was found to open by an earlier mount, if any (no API call)."""
    known = _load_registry(root).get(key_fingerprint(api_url, key))
    return known if isinstance(known, str) and known else None


def account_known(root: Path, api_url: str, key: Secret) -> bool:
    """True when :func:`identify` will answer from the registry (no API call)."""
    return registered_account(root, api_url, key) is not None


def known_accounts(root: Path) -> set[str]:
    """Every account id in the registry (whatever the key or API address)."""
    return {v for v in _load_registry(root).values() if isinstance(v, str)}


SLOW_IDENTIFY = 5.0
"""Seconds without an answer to user/info after which the mount says what it waits for."""


async def _still_waiting(say: Callable[[str], None]) -> None:
    """The newcomer's case: after a refused key the next mount sat 65 s in silence (the host's per-IP minute
    for user/info, which only the shared budget knows)."""
    await trio.sleep(SLOW_IDENTIFY)
    say("still waiting to identify the account: 1fichier allows one user/info per minute per address and one per "
        "5 min per account (§2.1, §4); a key refused a moment ago has used this address's minute")


async def identify(scheduler: Scheduler, api_url: str, key: Secret, root: Path,
                   say: Callable[[str], None] | None = None) -> Identity:
    """The account behind ``key``: from the registry, else one ``user/info`` (then remembered).

    ``say`` is told when that call must first wait for its budget (user/info: 1 per 5 min, §4).

    Raises:
        FichierError: user/info failed (AuthError for a refused key).
    """
    fingerprint = key_fingerprint(api_url, key)
    known = _load_registry(root).get(fingerprint)
    if isinstance(known, str) and known:
        return Identity(known)
    wait = scheduler.next_allowed(scheduler.client.user_info)
    if wait > 1 and say is not None:
        say(f"waiting {wait:.0f} s to identify the account behind this new API key: 1fichier allows one "
            "user/info per 5 min (§4), and one was made recently")
    else:
        log.info("identifying the account behind this API key (one user/info, §2.1)")
    try:
        async with trio.open_nursery() as nursery:
            if wait <= 1 and say is not None:  # a wait the scheduler cannot foresee (the shared per-IP minute)
                nursery.start_soon(_still_waiting, say)
            info = await scheduler.call(scheduler.client.user_info, lane=Lane.PREFETCH)
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # the call's own error (AuthError…), not a group of one
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    if not info.email:
        raise FichierError("user/info gave no account e-mail: cannot tell which account this key opens")
    ident = account_id(api_url, info.email)
    _save_registry(root, fingerprint, ident)
    return Identity(ident, info)


@dataclass(frozen=True)
class Journal:
    """Another journal directory of the cache root, with work not uploaded yet."""

    path: Path
    pending: int
    origin: dict[str, Any]

    def describe(self) -> str:
        where = self.origin.get("api_url", "an unknown API address (written by an older fichierfs)")
        folder = self.origin.get("remote_folder", "?")
        return f"{self.path} ({self.pending} pending change(s); {where}, remote folder {folder})"


def write_origin(store_dir: Path, api_url: str, remote_folder: str, account: str) -> None:
    """Record what a journal directory belongs to (read by :func:`other_journals`)."""
    doc = {"api_url": api_url, "remote_folder": remote_folder, "account": account}
    fd = open_private(store_dir / ORIGIN_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f)


def pending_in(db: Path) -> int:
    """Entries of a journal not done yet (read-only; same count as Store.journal_size)."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2)
    except sqlite3.Error:
        return 0
    try:
        n = con.execute("SELECT COUNT(*) FROM files WHERE state != 'empty' OR replaces != '[]'").fetchone()[0]
        n += con.execute("SELECT COUNT(*) FROM dirs").fetchone()[0]
        n += con.execute("SELECT COUNT(*) FROM ops").fetchone()[0]
        return int(n)
    except sqlite3.Error:
        return 0
    finally:
        con.close()


def _in_use(d: Path) -> bool:
    try:
        fd = os.open(d / "lock", os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def other_journals(root: Path, mine: Path, account: str) -> list[Journal]:
    """Journals under ``root`` other than ``mine`` with pending work that no live mount holds.

    Their ``origin`` says which API address and folder they were written for (empty for journals
    of fichierfs 0.1); ``origin["account"] == account`` marks this very account's.
    """
    found = []
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return []
    for d in entries:
        if d == mine or not (d / "store.db").is_file():
            continue
        try:
            origin = json.loads((d / ORIGIN_FILE).read_text())
        except (OSError, ValueError):
            origin = {}
        if _in_use(d):
            continue
        n = pending_in(d / "store.db")
        if n:
            found.append(Journal(d, n, origin))
    return found
