"""Issue 11: a newcomer's and a breaker's trial. Background mounts that start whatever the working
directory and say why they fail; a private cache; clear messages for the small traps."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.mount.conftest import KEY, MOUNT_SCALE, ROOT, is_mounted, run_emulator

FICHIERFS = str(Path(sys.executable).parent / "fichierfs")  # the console script, as a user runs it


def _daemon_pids(mnt: Path) -> list[int]:
    """PIDs of fichierfs processes serving ``mnt`` (found by their command line)."""
    want = str(mnt.resolve()).encode()
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"fichierfs" in b" ".join(argv) and want in argv:
            pids.append(int(d.name))
    return pids


@contextmanager
def background(mnt: Path) -> Iterator[None]:
    """Clean up after a background mount: unmount, then stop its daemon by PID."""
    try:
        yield
    finally:
        pids = _daemon_pids(mnt)
        if is_mounted(mnt):
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{p}").exists() for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)


def _seed(tmp_path: Path) -> Path:
    seed = tmp_path / "seed"
    (seed / "d").mkdir(parents=True)
    (seed / "d" / "hello.txt").write_text("hello\n")
    return seed


def _shadow(where: Path) -> Path:
    """A ``fichierfs/`` folder that breaks on import (the parent of a clone, or ~ after cloning)."""
    pkg = where / "fichierfs"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('shadow fichierfs package in the working directory')\n")
    (pkg / "__main__.py").write_text("")
    return where


def test_background_mount_from_a_dir_holding_a_fichierfs_folder(tmp_path: Path) -> None:
    """Issue 11.1: the daemon imports the installed package, not ./fichierfs."""
    cwd = _shadow(tmp_path / "home")
    with run_emulator(tmp_path / "state", _seed(tmp_path)) as emu:
        mnt = tmp_path / "mnt"
        mnt.mkdir()
        env = {**os.environ, "FICHIER_API_KEY": KEY}
        with background(mnt):
            res = subprocess.run([FICHIERFS, "mount", "--api-url", emu.url, "--budget-scale", str(MOUNT_SCALE),
                                  "--cache-dir", str(tmp_path / "cache"), str(mnt)],
                                 env=env, capture_output=True, text=True, timeout=60, cwd=cwd, check=False)
            assert res.returncode == 0, res.stderr
            assert is_mounted(mnt)
            assert (mnt / "d" / "hello.txt").read_text() == "hello\n"


def test_a_daemon_dying_before_the_mount_is_live_says_why(tmp_path: Path) -> None:
    """Issue 11.1: whatever kills the child before it is live reaches the user (here an import error)."""
    shadow = _shadow(tmp_path / "shadow")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = {**os.environ, "FICHIER_API_KEY": KEY, "PYTHONPATH": str(shadow)}
    with background(mnt):
        # the parent ignores PYTHONPATH (-I); the child inherits it and imports the broken package
        res = subprocess.run([sys.executable, "-I", "-m", "fichierfs", "mount", "--api-url", "http://127.0.0.1:9/v1",
                              "--cache-dir", str(tmp_path / "cache"), str(mnt)],
                             env=env, capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert res.returncode == 1
    assert "mount failed" in res.stderr
    assert "shadow fichierfs package in the working directory" in res.stderr, res.stderr
    assert not is_mounted(mnt)


def _bg_mount(emu, mnt: Path, cache: Path, *extra: str, key: str = KEY, log: Path | None = None,
              scale: float = MOUNT_SCALE) -> subprocess.CompletedProcess[str]:
    """``fichierfs mount`` (background, as a user runs it); returns once live or failed."""
    args = [FICHIERFS, "mount", "--api-url", emu.url, "--budget-scale", str(scale), "--cache-dir", str(cache)]
    if log is not None:
        args += ["--log-file", str(log)]
    env = {**os.environ, "FICHIER_API_KEY": key}
    return subprocess.run([*args, *extra, str(mnt)], env=env, capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)


def _umount(mnt: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([FICHIERFS, "umount", *extra, str(mnt)], capture_output=True, text=True, timeout=120, check=False)
    deadline = time.monotonic() + 20  # the daemon exits after the kernel mount is gone (issue 12 item 7)
    while _daemon_pids(mnt) and time.monotonic() < deadline:
        time.sleep(0.05)
    return res


def test_cache_and_log_are_private_whatever_the_umask(tmp_path: Path) -> None:
    """Issue 11.2: as user nobody, nothing of the cache or the log file can be read or listed."""
    import re
    import stat
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="fichierfs-private.", dir="/tmp"))
    try:
        base.chmod(0o755)  # others may traverse it: only fichierfs's own modes protect the cache
        cache = base / "cache"
        old = cache / "0123456789abcdef"  # a cache written by an older version, world-readable
        (old / "staging").mkdir(parents=True, mode=0o755)
        cache.chmod(0o755)
        old.chmod(0o755)
        (old / "staging" / "7").write_bytes(b"staged secret")
        (old / "staging" / "7").chmod(0o644)
        log = base / "mount.log"
        mnt = tmp_path / "mnt"
        mnt.mkdir()
        mask = os.umask(0o022)
        try:
            with run_emulator(tmp_path / "state", _seed(tmp_path)) as emu, background(mnt):
                res = _bg_mount(emu, mnt, cache, log=log)
                assert res.returncode == 0, res.stderr
                (mnt / "d" / "new.txt").write_text("pending name and link\n")
                sync = subprocess.run([FICHIERFS, "sync", "-q", "--timeout", "60", str(mnt)], capture_output=True,
                                      text=True, timeout=90, check=False)
                assert sync.returncode == 0, sync.stderr
                (mnt / "d" / "later.txt").write_text("not uploaded yet\n")  # a pending row, WAL in use
                entries = [cache, log, *cache.rglob("*")]
                assert any(p.name == "store.db-wal" for p in entries), "the journal is open in WAL mode"
                bad = {str(p): oct(stat.S_IMODE(p.lstat().st_mode)) for p in entries if not p.is_symlink() and
                       stat.S_IMODE(p.lstat().st_mode) != (0o700 if p.is_dir() else 0o600)}
                assert not bad, bad
                probe = ("import os, sys\nfor p in sys.stdin.read().split('\\0'):\n"
                         "    try:\n        os.listdir(p) if os.path.isdir(p) else open(p, 'rb').read(1)\n"
                         "        print(p)\n    except OSError:\n        pass\n")
                res = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                                      sys.executable, "-I", "-c", probe], input="\0".join(map(str, entries)),
                                     capture_output=True, text=True, timeout=30, check=False)
                assert res.returncode == 0, res.stderr
                assert res.stdout.strip() == "", f"readable by nobody:\n{res.stdout}"
                _umount(mnt)
        finally:
            os.umask(mask)
        text = log.read_text()
        assert "uploaded" in text
        assert not re.search(r"https?://1fichier\.com/\?[a-z0-9]{5,}", text), "a file link is in an INFO log"
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=False)


def test_a_rotated_key_finds_the_journal(tmp_path: Path) -> None:
    """Issue 11.3: uploads left pending by a plain umount are uploaded by the next mount with a NEW key."""
    cache = tmp_path / "cache"
    with run_emulator(tmp_path / "state", _seed(tmp_path)) as emu:
        mnt = tmp_path / "mnt"
        mnt.mkdir()
        with background(mnt):
            res = _bg_mount(emu, mnt, cache, "--write-back-delay", "3600", key=KEY)
            assert res.returncode == 0, res.stderr
            for i in range(3):
                (mnt / "d" / f"p{i}.txt").write_text(f"pending {i}\n")
            res = _umount(mnt)
            assert res.returncode == 0 and "not uploaded yet" in res.stderr, res.stderr
        assert emu.calls("upload.cgi") == 0
        with background(mnt):
            res = _bg_mount(emu, mnt, cache, key=KEY + "-rotated")
            assert res.returncode == 0, res.stderr
            sync = subprocess.run([FICHIERFS, "sync", "-q", "--timeout", "60", str(mnt)], capture_output=True,
                                  text=True, timeout=90, check=False)
            assert sync.returncode == 0, sync.stderr
            assert emu.calls("upload.cgi") >= 1
            assert sorted(p.name for p in (mnt / "d").iterdir()) == ["hello.txt", "p0.txt", "p1.txt", "p2.txt"]
            assert (mnt / "d" / "p2.txt").read_text() == "pending 2\n"
            _umount(mnt)
        assert emu.stats()["flood_locks"] == 0


def test_a_journal_of_another_api_address_is_reported_and_adopted(tmp_path: Path) -> None:
    """Issue 11.3: where the account cannot be matched (the API address changed), the mount says so
    and --adopt-journal takes the pending uploads over."""
    cache = tmp_path / "cache"
    seed = _seed(tmp_path)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with run_emulator(tmp_path / "state", seed) as emu, background(mnt):
        res = _bg_mount(emu, mnt, cache, "--write-back-delay", "3600")
        assert res.returncode == 0, res.stderr
        (mnt / "d" / "orphan.txt").write_text("left behind\n")
        assert _umount(mnt).returncode == 0
    with run_emulator(tmp_path / "state", None) as emu, background(mnt):  # same account, new port
        res = _bg_mount(emu, mnt, cache)
        assert res.returncode == 0, res.stderr
        assert "not this mount's" in res.stderr and "1 pending change" in res.stderr, res.stderr
        journal = res.stderr.split("the journal ", 1)[1].split(" ", 1)[0]
        assert Path(journal).is_dir()
        assert _umount(mnt).returncode == 0
        res = _bg_mount(emu, mnt, cache, "--adopt-journal", journal)
        assert res.returncode == 0, res.stderr
        assert "adopted the journal" in res.stderr, res.stderr
        sync = subprocess.run([FICHIERFS, "sync", "-q", "--timeout", "60", str(mnt)], capture_output=True,
                              text=True, timeout=90, check=False)
        assert sync.returncode == 0, sync.stderr
        assert (mnt / "d" / "orphan.txt").read_text() == "left behind\n"
        assert emu.calls("upload.cgi") == 1
        _umount(mnt)


def test_no_silent_waits_and_no_lost_logs(tmp_path: Path) -> None:
    """Issue 11.6: without /dev/log a background mount logs to a file in the cache dir and says where (once);
    a remount held by the 30 s rule (§4) says what it waits for."""
    cache = tmp_path / "cache"
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if Path("/dev/log").exists():
        import pytest

        pytest.skip("this machine has /dev/log: the fallback is not reachable")
    with run_emulator(tmp_path / "state", _seed(tmp_path)) as emu, background(mnt):
        res = _bg_mount(emu, mnt, cache, scale=0.2)  # a 30 s rule of 6 s: outlasts the umount
        assert res.returncode == 0, res.stderr
        fallback = cache / "fichierfs.log"
        assert f"logs to {fallback}" in res.stderr, res.stderr
        assert "mounted / on" in fallback.read_text()
        assert oct(fallback.stat().st_mode & 0o777) == "0o600"
        assert _umount(mnt).returncode == 0
        res = _bg_mount(emu, mnt, cache, scale=0.2)  # at once: the root was listed < 30 s ago
        assert res.returncode == 0, res.stderr
        assert "waiting" in res.stderr and "30 s" in res.stderr, res.stderr
        assert "logs to" not in res.stderr, res.stderr  # said once, when the fallback log was created
        assert emu.stats()["flood_locks"] == 0
        res = _umount(mnt, "--wait")  # says it is done, also when not on a terminal
        assert res.returncode == 0 and "is uploaded; unmounted" in res.stderr, res.stderr


def test_a_killed_daemon_is_cleaned_up_by_mount_and_umount(tmp_path: Path) -> None:
    """Issue 11.8: after kill -9, `mount` over the dead mount point says what happened and cleans up
    (no traceback); `umount` after kill -9 does it without telling the user to run fusermount3."""
    cache = tmp_path / "cache"
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with run_emulator(tmp_path / "state", _seed(tmp_path)) as emu, background(mnt):
        for step in ("mount", "umount"):
            res = _bg_mount(emu, mnt, cache)
            assert res.returncode == 0, res.stderr
            for pid in _daemon_pids(mnt):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while _daemon_pids(mnt) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert is_mounted(mnt)  # ENOTCONN from here on
            if step == "mount":
                res = _bg_mount(emu, mnt, cache)
                assert res.returncode == 0, res.stderr
                assert "Traceback" not in res.stderr
                assert "died" in res.stderr, res.stderr
                assert (mnt / "d" / "hello.txt").read_text() == "hello\n"
                assert _umount(mnt).returncode == 0
            else:
                res = _umount(mnt)
                assert res.returncode == 0, res.stderr
                assert "died" in res.stderr and "fusermount3 -u" not in res.stderr, res.stderr
                assert not is_mounted(mnt)
