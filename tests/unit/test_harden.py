"""Issue 11 at unit level: private files, links out of logs, key files, keyring first, mount point checks."""

from __future__ import annotations

import io
import logging
import os
import stat
import sys
from pathlib import Path

import pytest

from fichierfs import cli
from fichierfs.errors import ConfigError
from fichierfs.keys import read_key_file
from fichierfs.log import RedactingFilter, setup_logging
from fichierfs.private import open_private, private_dir, tighten

LINK = "https://1fichier.com/?ux9c0872ivxdek6n0lwg"


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_private_dir_and_files_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        d = private_dir(tmp_path / "a" / "b")
        os.close(open_private(d / "f"))
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a") == _mode(d) == 0o700
    assert _mode(d / "f") == 0o600


def test_tighten_an_old_world_readable_tree(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    (root / "x" / "staging").mkdir(parents=True)
    for p in (root, root / "x", root / "x" / "staging"):
        p.chmod(0o755)
    (root / "x" / "store.db").write_text("")
    (root / "x" / "store.db").chmod(0o644)
    (root / "link").symlink_to("/etc/hostname")
    assert tighten(root) == 4
    assert [_mode(p) for p in (root, root / "x", root / "x" / "staging")] == [0o700] * 3
    assert _mode(root / "x" / "store.db") == 0o600
    assert _mode(Path("/etc/hostname")) & 0o004, "a symlink's target is never changed"
    assert tighten(root) == 0


def test_log_file_is_created_0600_and_tightened(tmp_path: Path) -> None:
    log = tmp_path / "m.log"
    log.write_text("")
    log.chmod(0o644)
    old = os.umask(0o022)
    try:
        setup_logging("info", log)
    finally:
        os.umask(old)
        for h in list(logging.getLogger().handlers):
            logging.getLogger().removeHandler(h)
            h.close()
    assert _mode(log) == 0o600


def _record(level: int, msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("fichierfs.writer", level, __file__, 1, msg, args, None)


def test_file_links_stay_out_of_logs_above_debug() -> None:
    f = RedactingFilter()
    info = _record(logging.INFO, "uploaded %r → %s", "a.txt", LINK)
    f.filter(info)
    assert "ux9c0872ivxdek6n0lwg" not in info.getMessage() and "https://1fichier.com/?<link>" in info.getMessage()
    warn = _record(logging.WARNING, "rm of %s failed", "https://alterupload.com/?k97o8igxxx")
    f.filter(warn)
    assert "k97o8igxxx" not in warn.getMessage()
    debug = _record(logging.DEBUG, "uploaded → %s", LINK)
    f.filter(debug)
    assert LINK in debug.getMessage(), "--log-level debug is the opt-in to see links"


def test_a_key_file_with_two_lines_is_refused(tmp_path: Path) -> None:
    k = tmp_path / "key"
    k.write_text("emu-first-key\nemu-second-key\n")
    k.chmod(0o600)
    with pytest.raises(ConfigError, match="one line"):
        read_key_file(k)
    k.write_text("\nemu-only-key\n\n")
    assert read_key_file(k).reveal() == "emu-only-key"


def test_login_checks_the_keyring_before_asking_for_the_key(monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    import keyring
    from keyring.backends.fail import Keyring as Fail

    stdin = io.StringIO("emu-never-read\n")
    monkeypatch.setattr(sys, "stdin", stdin)
    old = keyring.get_keyring()
    keyring.set_keyring(Fail())
    try:
        assert cli.main(["login"]) == 2
    finally:
        keyring.set_keyring(old)
    assert stdin.tell() == 0, "the key was asked for before the keyring was checked"
    err = capsys.readouterr().err
    assert "no usable system keyring" in err and "--api-key-file" in err
    assert "emu-never-read" not in err


def test_a_non_empty_mount_point_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FICHIER_API_KEY", "emu-x")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    (mnt / "precious.txt").write_text("hidden by a mount\n")
    assert cli.main(["mount", "--api-url", "http://127.0.0.1:9/v1", str(mnt)]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "precious.txt" in err and "-o nonempty" in err
    assert cli.parse_o_options("nonempty,ro") == {"nonempty": True, "read_only": True}


def test_account_identity_is_the_account_not_the_key(tmp_path: Path) -> None:
    import fcntl

    from fichierfs.account import (
        _save_registry,
        account_id,
        account_known,
        key_fingerprint,
        other_journals,
    )
    from fichierfs.api import Secret
    from fichierfs.oprecords import Rm
    from fichierfs.store import Store

    url = "https://api.1fichier.com/v1"
    assert account_id(url, "Me@Example.org") == account_id(url + "/", "me@example.org")
    assert account_id(url, "me@example.org") != account_id("http://127.0.0.1:1/v1", "me@example.org")
    old, new = Secret("emu-old-key"), Secret("emu-new-key")
    assert "emu-old-key" not in key_fingerprint(url, old) and key_fingerprint(url, old) != key_fingerprint(url, new)
    private_dir(tmp_path)
    _save_registry(tmp_path, key_fingerprint(url, old), account_id(url, "me@example.org"))
    assert account_known(tmp_path, url, old) and not account_known(tmp_path, url, new)
    assert _mode(tmp_path / "accounts.json") == 0o600
    assert "emu-old-key" not in (tmp_path / "accounts.json").read_text()
    # journals with pending work are found, unless a live mount holds them
    for name, pending in (("a", True), ("b", False), ("c", True)):
        st = Store(tmp_path / name / "store.db")
        if pending:
            st.add_op(Rm(("https://1fichier.com/?abcdef",)))
        st.close()
    fd = os.open(tmp_path / "c" / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        found = other_journals(tmp_path, tmp_path / "mine", "acct")
    finally:
        os.close(fd)
    assert [(j.path.name, j.pending) for j in found] == [("a", 1)]
    assert "older fichierfs" in found[0].describe()


def test_a_second_mount_of_one_journal_names_the_mount_holding_it(tmp_path: Path) -> None:
    """A refused second mount of the same account and folder says which mount holds the journal."""
    from fichierfs import mount

    fd = mount._lock_store(tmp_path / "store", tmp_path / "mnt-a")
    try:
        with pytest.raises(ConfigError) as exc:
            mount._lock_store(tmp_path / "store", tmp_path / "mnt-b")
        assert f"pid {os.getpid()}, mounted on {tmp_path / 'mnt-a'}" in str(exc.value)
        assert "fichierfs umount" in str(exc.value)
    finally:
        mount._LOCKS.remove(fd)
        os.close(fd)
