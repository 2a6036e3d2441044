"""Unmodified programs on a read mount of real files; the API cost asserted from the emulator."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.mount.conftest import KEY, MOUNT_SCALE, ROOT, is_mounted, run_emulator, run_mount


def sh(cmd: str, cwd: Path | None = None) -> str:
    res = subprocess.run(cmd, shell=True, capture_output=True, text=True, cwd=cwd, timeout=300)
    assert res.returncode == 0, f"{cmd!r} failed ({res.returncode}): {res.stderr[-2000:]}"
    return res.stdout


@pytest.fixture(scope="module")
def mounted(real_seed: Path, tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("programs")
    with run_emulator(base / "state", real_seed) as emu:
        emu.reset()
        with run_mount(emu, base / "mnt", "-o", "ro") as m:  # read workloads; also checks -o ro → EROFS
            yield emu, m.path, real_seed


def test_ls_find_stat_cost_one_listing_per_folder(mounted) -> None:
    emu, mnt, seed = mounted
    folders = 1 + sum(1 for p in seed.rglob("*") if p.is_dir())
    files = sum(1 for p in seed.rglob("*") if p.is_file())
    out = sh(f"ls -lR {mnt}")
    assert out.count("\n") > files
    first = emu.listings()
    assert first <= folders, f"{first} listings for {folders} folders"
    found = sh(f"find {mnt} -type f").split("\n")
    assert len([f for f in found if f]) == files
    for p in seed.rglob("*"):  # stat every file and folder: sizes match, no extra call
        rel = p.relative_to(seed)
        st = os.stat(mnt / rel)
        if p.is_file():
            assert st.st_size == p.stat().st_size, rel
    sh(f"ls -lR {mnt} > /dev/null")
    calls = emu.stats()["calls"]
    assert emu.listings() == first, "repeating within the TTL must cost nothing"
    assert calls.get("file/info", 0) == 0
    assert emu.stats()["flood_locks"] == 0


def test_checksums_match_originals(mounted) -> None:
    emu, mnt, seed = mounted
    sums = "".join(
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(seed)}\n" for p in sorted(seed.rglob("*")) if p.is_file()
    )
    listfile = mnt.parent / "SHA256SUMS"
    listfile.write_text(sums)
    sh(f"sha256sum --quiet -c {listfile}", cwd=mnt)
    assert emu.stats()["flood_locks"] == 0


def test_tar_file_python_sqlite(mounted) -> None:
    emu, mnt, seed = mounted
    names = sh(f"tar -tzf {mnt}/archives/doc-bundle.tar.gz").split()
    assert names and names == sh(f"tar -tzf {seed}/archives/doc-bundle.tar.gz").split()
    kinds = sh(f"file -b {mnt}/images/*")
    assert "image" in kinds.lower() or "xpm" in kinds.lower()
    out = sh(f"{sys.executable} -c \"import sys; sys.path.insert(0, '{mnt}/python'); import idna; "
             f"print(idna.__file__); print(idna.encode('bücher.example').decode())\"")
    assert str(mnt) in out and "xn--bcher-kva.example" in out
    rows = sh(f"sqlite3 -readonly 'file:{mnt}/data/inventory.sqlite?immutable=1' 'SELECT COUNT(*) FROM files'")
    assert int(rows.strip()) > 100
    assert emu.stats()["flood_locks"] == 0


def test_xattrs_statfs_and_read_only(mounted) -> None:
    emu, mnt, seed = mounted
    p = mnt / "data" / "inventory.sqlite"
    names = os.listxattr(p)
    assert set(names) >= {"user.fichier.url", "user.fichier.whirlpool", "user.fichier.content_type"}
    assert os.getxattr(p, "user.fichier.url").startswith(b"https://1fichier.com/?")
    import whirlpool

    assert os.getxattr(p, "user.fichier.whirlpool").decode() == whirlpool.new(
        (seed / "data" / "inventory.sqlite").read_bytes()).hexdigest().lower()
    st = os.statvfs(mnt)
    assert st.f_blocks > 0
    before = emu.calls("user/info")
    for _ in range(20):
        os.statvfs(mnt)
    assert emu.calls("user/info") == before <= 1  # cached ≥ 5 min
    with pytest.raises(OSError) as exc:
        open(mnt / "new-file", "w")
    assert exc.value.errno == 30  # EROFS


def test_key_not_in_cmdline_or_logs(mounted) -> None:
    emu, mnt, seed = mounted
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
            except OSError:
                continue
            assert KEY.encode() not in cmdline
    for log in mnt.parent.glob("*.log"):
        assert KEY not in log.read_text(errors="replace")


def test_background_mount_and_umount(tmp_path: Path) -> None:
    """`fichierfs mount` (no -f) returns once live; `fichierfs umount` ends it."""
    seed = tmp_path / "seed"
    (seed / "d").mkdir(parents=True)
    (seed / "d" / "hello.txt").write_text("hello\n")
    with run_emulator(tmp_path / "state", seed) as emu:
        mnt = tmp_path / "mnt"
        mnt.mkdir()
        env = {**os.environ, "FICHIER_API_KEY": KEY}
        fichierfs = [sys.executable, "-m", "fichierfs"]
        res = subprocess.run([*fichierfs, "mount", "--api-url", emu.url, "--budget-scale", "0.07", str(mnt)],
                             env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
        try:
            assert res.returncode == 0, res.stderr
            assert is_mounted(mnt)  # live as soon as the command returned
            assert (mnt / "d" / "hello.txt").read_text() == "hello\n"
        finally:
            res2 = subprocess.run([*fichierfs, "umount", str(mnt)], capture_output=True, text=True, timeout=60)
            if is_mounted(mnt):
                subprocess.run(["fusermount3", "-u", "-z", str(mnt)])
        assert res2.returncode == 0, res2.stderr
        assert not is_mounted(mnt)


def test_bad_key_fails_the_mount_clearly(tmp_path: Path) -> None:
    with run_emulator(tmp_path / "state", None) as emu:
        mnt = tmp_path / "mnt"
        mnt.mkdir()
        env = {**os.environ, "FICHIER_API_KEY": "wrong-key-XYZ"}
        res = subprocess.run([sys.executable, "-m", "fichierfs", "mount", "--api-url", emu.url, str(mnt)],
                             env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert res.returncode != 0
        assert "No such user" in res.stderr or "#93" in res.stderr
        assert "wrong-key-XYZ" not in res.stderr
        assert not is_mounted(mnt)


def test_right_key_after_a_wrong_one_does_not_wait_the_5_minutes(tmp_path: Path) -> None:
    """A key 1fichier refuses never counted for a user (§4: user/info is 1 per 5 min per user): its
    charge is given back, so the next mount with the right key waits at most the per-IP minute, not
    the 5-minute slot; the wrong key is named as the reason it failed."""
    with run_emulator(tmp_path / "state", None) as emu:
        mnt = tmp_path / "mnt"
        mnt.mkdir()
        cmd = [sys.executable, "-m", "fichierfs", "mount", "--api-url", emu.url, "--budget-scale", str(MOUNT_SCALE),
               "--cache-dir", str(tmp_path / "cache"), str(mnt)]
        bad = subprocess.run(cmd, env={**os.environ, "FICHIER_API_KEY": "wrong-key-XYZ"}, capture_output=True,
                             text=True, timeout=60, cwd=ROOT)
        assert bad.returncode == 1 and "1fichier refused the API key" in bad.stderr, bad.stderr
        t0 = time.monotonic()
        good = subprocess.run(cmd, env={**os.environ, "FICHIER_API_KEY": KEY}, capture_output=True, text=True,
                              timeout=120, cwd=ROOT)
        took = time.monotonic() - t0
        try:
            assert good.returncode == 0, good.stderr
            assert took < 0.75 * 310 * MOUNT_SCALE, (took, good.stderr)  # not the 5-minute slot
            assert emu.stats()["flood_locks"] == 0
            assert emu.stats()["calls"]["user/info"] == 2  # the wrong key's, then the right key's
        finally:
            subprocess.run([sys.executable, "-m", "fichierfs", "umount", str(mnt)], capture_output=True, timeout=60,
                           cwd=ROOT)
            if is_mounted(mnt):
                subprocess.run(["fusermount3", "-u", "-z", str(mnt)])


def test_missing_remote_folder_is_named(tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    (seed / "a").mkdir(parents=True)
    with run_emulator(tmp_path / "state", seed) as emu:
        mnt = tmp_path / "mnt"
        mnt.mkdir()
        res = subprocess.run([sys.executable, "-m", "fichierfs", "mount", "--api-url", emu.url, "--budget-scale",
                              str(MOUNT_SCALE), "--cache-dir", str(tmp_path / "cache"), "--remote-folder", "/nope",
                              str(mnt)], env={**os.environ, "FICHIER_API_KEY": KEY}, capture_output=True, text=True,
                             timeout=60, cwd=ROOT)
        assert res.returncode == 1, res.stderr
        assert "the remote folder /nope does not exist" in res.stderr, res.stderr
        assert not is_mounted(mnt)


def test_mmap_and_random_access(mounted) -> None:
    import mmap

    emu, mnt, seed = mounted
    name = "data/inventory.sqlite"
    want = (seed / name).read_bytes()
    with open(mnt / name, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        assert len(mm) == len(want)
        assert mm[:16] == want[:16] == b"SQLite format 3\x00"
        assert mm[-100:] == want[-100:]
        assert mm[len(want) // 2 : len(want) // 2 + 4096] == want[len(want) // 2 : len(want) // 2 + 4096]
    with open(mnt / name, "rb") as f:
        for off in (len(want) - 1, 0, len(want) // 3):
            f.seek(off)
            assert f.read(1000) == want[off : off + 1000]


def test_quick_remount_waits_instead_of_flood_lock(tmp_path: Path) -> None:
    """Unmount and mount again at once: the new process knows the old one's listings (§4) and reuses
    them (the host budget shares a fresh listing between mounts), so three mounts cost one listing."""
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "a.txt").write_text("a\n")
    with run_emulator(tmp_path / "state", seed) as emu:
        for _ in range(3):
            with run_mount(emu, tmp_path / "mnt", "--cache-dir", str(tmp_path / "cache")) as m:
                assert (m.path / "a.txt").read_text() == "a\n"
        assert emu.stats()["flood_locks"] == 0
        assert emu.listings() == 1  # remounts serve the persisted listing (issue 13): no re-list
        assert emu.calls("file/info") == 2  # the key check of each remount
