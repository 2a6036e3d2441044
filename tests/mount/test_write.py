"""Write side through the real CLI: unmodified programs write, remount, verify (issue 5 item 5).

The mount runs with a short write-back delay; ``wait_synced`` polls the status document
(xattr ``user.fichierfs.status``) until nothing is pending, then the mount is stopped and a
NEW mount over the same emulator state and cache dir checks that everything survived.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import whirlpool

from tests.mount.conftest import EmulatorProc, Mount, run_emulator, run_mount

MiB = 1 << 20


def sh(cmd: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, shell=True, capture_output=True, text=True, cwd=cwd, timeout=600)
    if check:
        assert res.returncode == 0, f"{cmd!r} failed ({res.returncode}): {res.stdout[-1500:]} {res.stderr[-2000:]}"
    return res


def status(mnt: Path) -> dict:
    return json.loads(os.getxattr(mnt, "user.fichierfs.status"))


def wait_synced(mnt: Path, timeout: float = 240) -> dict:
    """Poll the status document until the write-back queue is empty; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        doc = status(mnt)
        wb = doc.get("writeback", {})
        if wb.get("pending", 0) == 0:
            return doc
        assert time.monotonic() < deadline, f"not synced after {timeout} s: {wb}"
        time.sleep(0.2)


def tree_sums(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


class Env:
    """One emulator; mounts come and go over the same state and cache dir."""

    def __init__(self, base: Path, emu: EmulatorProc) -> None:
        self.base, self.emu = base, emu
        self.cache = base / "cache"
        self.mnt = base / "mnt"

    @contextmanager
    def mount(self, *extra: str, env: dict[str, str] | None = None) -> Iterator[Mount]:
        with run_mount(self.emu, self.mnt, "--cache-dir", str(self.cache), "--write-back-delay", "0.2", *extra,
                       env=env) as m:
            yield m


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    with run_emulator(tmp_path / "state", None) as emu:
        yield Env(tmp_path, emu)


def test_cp_r_in_and_out_with_checksums(env: Env, real_seed: Path) -> None:
    want = tree_sums(real_seed)
    with env.mount() as m:
        sh(f"cp -r {real_seed} {m.path}/tree")
        assert tree_sums(m.path / "tree") == want  # read-your-writes before upload
        doc = wait_synced(m.path)
        assert doc["writeback"]["failed"] == 0
    with env.mount() as m:
        out = env.base / "out"
        sh(f"cp -r {m.path}/tree {out}")
        assert tree_sums(out) == want
        s = env.emu.stats()
        assert s["flood_locks"] == 0
        files = len(want)
        print(f"\ncp -r of {files} files: {s['calls']['upload/get_upload_server']} upload servers, "
              f"{s['calls']['upload.cgi']} POSTs, {s['calls']['end.pl']} end.pl, "
              f"{s['calls']['folder/mkdir']} mkdir")
        assert s["calls"]["upload.cgi"] <= files  # never more than one POST per file


def test_rsync_then_nothing_to_do_after_remount(env: Env, real_seed: Path) -> None:
    if shutil.which("rsync") is None:
        pytest.skip("rsync not installed (scripts/setup installs it)")
    with env.mount() as m:
        sh(f"rsync -a {real_seed}/ {m.path}/r/")
        assert sh(f"rsync -a -c -n -i {real_seed}/ {m.path}/r/").stdout.strip() == ""
        wait_synced(m.path)
    with env.mount() as m:
        out = sh(f"rsync -a -n -i {real_seed}/ {m.path}/r/").stdout.strip()
        assert out == "", f"rsync would transfer after remount:\n{out[:2000]}"
        assert sh(f"rsync -a -c -n -i {real_seed}/ {m.path}/r/").stdout.strip() == ""


def test_tar_x_git_sqlite_append_overwrite(env: Env, real_seed: Path) -> None:
    tarball = env.base / "src.tar.gz"
    with tarfile.open(tarball, "w:gz") as t:
        t.add(real_seed / "python", arcname="python")
    data = os.urandom(3 * MiB)
    with env.mount() as m:
        mnt = m.path
        sh(f"tar -xzf {tarball} -C {mnt}")
        sh("git init -q repo && cd repo && git config user.email t@e && git config user.name T && "
           "echo one > a.txt && git add a.txt && git commit -qm one && "
           "echo two >> a.txt && mkdir -p sub && echo x > sub/b && git add -A && git commit -qm two", cwd=mnt)
        sh(f"sqlite3 {mnt}/db.sqlite 'CREATE TABLE t(x); INSERT INTO t VALUES (1),(2),(3);'")
        (mnt / "grow.bin").write_bytes(data[: 1 * MiB])
        with open(mnt / "grow.bin", "ab") as f:
            f.write(data[1 * MiB :])
        wait_synced(mnt)
        sh(f"printf 'PATCHED' | dd of={mnt}/grow.bin bs=1 seek=1000000 conv=notrunc status=none")
        wait_synced(mnt)
    patched = bytearray(data)
    patched[1000000:1000007] = b"PATCHED"
    with env.mount() as m:
        mnt = m.path
        assert tree_sums(mnt / "python") == tree_sums(real_seed / "python")
        sh("git fsck --strict && git log --oneline | wc -l | grep -qx 2", cwd=mnt / "repo")
        assert sh(f"sqlite3 {mnt}/db.sqlite 'SELECT SUM(x) FROM t'").stdout.strip() == "6"
        assert (mnt / "grow.bin").read_bytes() == bytes(patched)
        assert env.emu.stats()["flood_locks"] == 0


def test_editor_save_and_touch_empty(env: Env) -> None:
    with env.mount() as m:
        mnt = m.path
        (mnt / "doc.txt").write_text("v1\n")
        wait_synced(mnt)
        tmp = mnt / ".doc.txt.swp"
        tmp.write_text("v2\n")
        os.replace(tmp, mnt / "doc.txt")  # write temp + rename over
        sh(f"touch {mnt}/empty && : > {mnt}/empty2")
        os.utime(mnt / "doc.txt", (1_600_000_000, 1_600_000_000))
        wait_synced(mnt)
    with env.mount() as m:
        mnt = m.path
        assert (mnt / "doc.txt").read_text() == "v2\n"
        assert int((mnt / "doc.txt").stat().st_mtime) == 1_600_000_000
        assert (mnt / "empty").stat().st_size == 0 and (mnt / "empty2").exists()
        assert sorted(p.name for p in mnt.iterdir()) == ["doc.txt", "empty", "empty2"]


@pytest.mark.parametrize("step", ["before_post", "after_post", "after_end", "before_delete_old"])
def test_kill_9_at_each_upload_step(env: Env, step: str) -> None:
    """SIGKILL at a named step of an upload batch (hook: $FICHIERFS_TEST_CRASH_AT), remount:
    every member exactly once with the right content (an overwrite and 4 new files)."""
    old = b"old content\n" * 1000
    new = b"new content!\n" * 2000
    others = {f"n{i}.txt": f"new file {i}\n".encode() * (100 + i) for i in range(4)}
    with env.mount() as m:
        (m.path / "f.bin").write_bytes(old)
        wait_synced(m.path)
    with env.mount(env={"FICHIERFS_TEST_CRASH_AT": step}) as m:
        (m.path / "f.bin").write_bytes(new)
        for n, b in others.items():
            (m.path / n).write_bytes(b)
        m.proc.wait(60)  # the hook SIGKILLs the mount at that step
        assert m.proc.returncode == -signal.SIGKILL
        subprocess.run(["fusermount3", "-u", "-z", str(m.path)], check=False)
    with env.mount() as m:
        wait_synced(m.path)
        assert (m.path / "f.bin").read_bytes() == new
        assert sorted(p.name for p in m.path.iterdir()) == ["f.bin", *sorted(others)]
        for n, b in others.items():
            assert os.getxattr(m.path / n, "user.fichier.whirlpool").decode() == whirlpool.new(b).hexdigest().lower()
        wp = json.loads(os.getxattr(m.path, "user.fichierfs.status"))  # alive
        assert wp
        got = os.getxattr(m.path / "f.bin", "user.fichier.whirlpool").decode()
        assert got == whirlpool.new(new).hexdigest().lower()
    assert env.emu.stats()["flood_locks"] == 0  # remounts right after SIGKILL knew the old listings


def test_faults_during_500_file_copy(env: Env, tmp_path: Path) -> None:
    import urllib.request

    src = tmp_path / "many"
    src.mkdir()
    for i in range(500):
        (src / f"f{i:03}.txt").write_bytes(f"file {i}\n".encode() * (1 + i % 13))

    def fault(endpoint: str, kind: str, nth: int) -> None:
        req = urllib.request.Request(env.emu.base + "/_emulator/fault", method="POST",
                                     data=json.dumps({"endpoint": endpoint, "kind": kind, "nth": nth}).encode(),
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10)

    with env.mount() as m:
        # batches: only a handful of upload calls, so the faults hit the first ones
        for endpoint, kind, nth in [("upload.cgi", "5xx", 1), ("end.pl", "html", 1), ("end.pl", "no_links", 2),
                                    ("upload/get_upload_server", "flood", 3), ("upload.cgi", "reset", 3),
                                    ("file/rm", "5xx", 1)]:
            fault(endpoint, kind, nth)
        sh(f"cp -r {src} {m.path}/many")
        doc = wait_synced(m.path, timeout=400)
        assert doc["writeback"]["failed"] == 0
    with env.mount() as m:
        names = sorted(p.name for p in (m.path / "many").iterdir())
        assert names == sorted(f"f{i:03}.txt" for i in range(500)), "every file exactly once"
        for i in range(0, 500, 7):
            p = m.path / "many" / f"f{i:03}.txt"
            data = (src / f"f{i:03}.txt").read_bytes()
            assert p.read_bytes() == data
            assert os.getxattr(p, "user.fichier.whirlpool").decode() == whirlpool.new(data).hexdigest().lower()
