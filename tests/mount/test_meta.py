"""Account-scale metadata through the real CLI (issue 13), emulator limits ON (time-scaled).

* a remount serves the persisted listings: ``ls -liR`` makes 0 listing calls and shows the
  same names, sizes and inode numbers;
* an out-of-band change (made through the API directly, as another client would) appears
  after ``fichierfs refresh`` and after ``--dir-cache-time``;
* a bad key fails the mount with a clear message and exit 1;
* kill -9 with a pending change, then remount: the change is still shown over the persisted
  listings; a damaged metadata DB is rebuilt (and said so in the log);
* names of 250 characters in several scripts round-trip; 251 → ENAMETOOLONG with a log line.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.mount.conftest import KEY, PY, ROOT, EmulatorProc, is_mounted, run_emulator, run_mount

FOLDERS, FILES = 12, 8


def sh(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)  # type: ignore[call-overload]


def api(emu: EmulatorProc, endpoint: str, body: dict) -> dict:
    """One call straight to the emulator's API, as another client of the account would."""
    req = urllib.request.Request(f"{emu.url}/{endpoint}.cgi", data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    for _ in range(20):
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.load(r)
        except urllib.error.HTTPError as exc:  # budget: the mount is using it too
            if exc.code != 403:
                raise
            time.sleep(0.3)
    raise AssertionError(f"{endpoint} refused 20 times")


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("meta")
    seed = base / "seed"
    for d in range(FOLDERS):
        for f in range(FILES):
            p = seed / f"d{d:02}" / f"f{f}.txt"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"x" * (d * 10 + f + 1))
    with run_emulator(base / "state", seed) as e:
        yield e, base


def ls_lir(mnt: Path) -> str:
    res = sh(["ls", "-liR", "--time-style=+%s", str(mnt)])
    assert res.returncode == 0, res.stderr
    return res.stdout.replace(str(mnt), "MNT")


def metadata_db(cache: Path) -> Path:
    found = list(cache.rglob("metadata.db"))
    assert len(found) == 1, found
    return found[0]


def test_remount_serves_persisted_listings_with_zero_listing_calls(emu) -> None:
    e, base = emu
    cache = base / "cache-remount"
    with run_mount(e, base / "mnt1", "--cache-dir", str(cache), "--read-only") as m:
        first = ls_lir(m.path)
    assert f"f{FILES - 1}.txt" in first
    before = e.listings()
    t0 = time.monotonic()
    with run_mount(e, base / "mnt1", "--cache-dir", str(cache), "--read-only") as m:
        live = time.monotonic() - t0
        second = ls_lir(m.path)
        took = time.monotonic() - t0
        assert e.listings() == before, "a remount listed folders before ls -lR completed"
        log = m.log.read_text()
    print(f"\nremount live in {live:.2f} s, + ls -liR of {FOLDERS} folders: {took:.2f} s, 0 listings")
    assert second == first  # same names, sizes, dates AND inode numbers
    assert "key checked with one file/info" in log


def test_out_of_band_change_after_refresh_and_after_dir_cache_time(emu) -> None:
    e, base = emu
    cache = base / "cache-oob"
    with run_mount(e, base / "mnt2", "--cache-dir", str(cache), "--read-only", "--dir-cache-time", "4") as m:
        assert "oob1" not in os.listdir(m.path)
        api(e, "folder/mkdir", {"folder_id": 0, "name": "oob1"})
        assert "oob1" not in os.listdir(m.path)  # the listing is fresh: not re-listed
        res = sh([PY, "-m", "fichierfs", "refresh", str(m.path)], cwd=ROOT)
        assert res.returncode == 0, res.stderr
        assert "refreshed" in res.stdout
        assert "oob1" in os.listdir(m.path)
        assert os.path.isdir(m.path / "oob1")  # no stale negative entry in the kernel

        api(e, "folder/mkdir", {"folder_id": 0, "name": "oob2"})
        assert "oob2" not in os.listdir(m.path)
        time.sleep(4.2)  # --dir-cache-time passed: the next use re-lists in the background
        deadline = time.monotonic() + 15
        while "oob2" not in os.listdir(m.path):
            assert time.monotonic() < deadline, "oob2 never appeared after --dir-cache-time"
            time.sleep(0.3)

        res = sh([PY, "-m", "fichierfs", "forget", str(m.path / "d00")], cwd=ROOT)
        assert res.returncode == 0 and "forgotten" in res.stdout, res.stderr
        res = sh([PY, "-m", "fichierfs", "refresh", "-r", str(m.path / "d00")], cwd=ROOT)
        assert res.returncode == 0 and "(1 listing(s))" in res.stdout, res.stdout + res.stderr
        res = sh([PY, "-m", "fichierfs", "refresh", str(base)], cwd=ROOT)
        assert res.returncode == 1 and "not on a fichierfs mount" in res.stderr


def test_bad_key_fails_the_mount_with_exit_1(emu) -> None:
    e, base = emu
    mnt = base / "mnt-bad"
    mnt.mkdir()
    env = {**os.environ, "FICHIER_API_KEY": "not-a-valid-key"}
    t0 = time.monotonic()
    res = subprocess.run([PY, "-m", "fichierfs", "mount", "-f", "--api-url", e.url, "--budget-scale", "0.07",
                          "--cache-dir", str(base / "cache-bad"), str(mnt)],
                         env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert res.returncode == 1
    assert "key" in res.stderr.lower() and "not-a-valid-key" not in res.stderr + res.stdout
    assert time.monotonic() - t0 < 20
    assert not is_mounted(mnt)


def test_kill9_keeps_pending_changes_and_damaged_db_is_rebuilt(emu) -> None:
    e, base = emu
    cache = base / "cache-kill"
    mnt = base / "mnt3"
    with run_mount(e, mnt, "--cache-dir", str(cache)) as m:
        ls_lir(m.path)
        (m.path / "d01" / "pending.txt").write_text("not uploaded yet\n")
        # a long write-back delay is not needed: kill before the default 3 s quiet time ends
        m.proc.send_signal(signal.SIGKILL)
        m.proc.wait(10)
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)
    before = e.listings()
    with run_mount(e, mnt, "--cache-dir", str(cache), "--write-back-delay", "600") as m:
        assert (m.path / "d01" / "pending.txt").read_text() == "not uploaded yet\n"
        assert len(os.listdir(m.path / "d01")) == FILES + 1
        # the others are served from the persisted listings; d01, changed just before the crash,
        # is re-listed once before it is served (its saved view may lag behind the journal)
        assert e.listings() <= before + 1
    db = metadata_db(cache)
    raw = bytearray(db.read_bytes())
    raw[0:16] = b"definitely junk!"
    db.write_bytes(bytes(raw))
    with run_mount(e, mnt, "--cache-dir", str(cache), "--write-back-delay", "600") as m:
        assert sorted(os.listdir(m.path / "d01")) == sorted([f"f{f}.txt" for f in range(FILES)] + ["pending.txt"])
        assert "rebuilt" in m.log.read_text()
    assert (Path(str(db) + ".bad")).exists()


def test_6000_file_folder_shows_6000_files_with_right_sizes(tmp_path: Path) -> None:
    seed = tmp_path / "seed" / "photos"
    seed.mkdir(parents=True)
    n = 6000
    for i in range(n):
        (seed / f"p{i:05}.jpg").write_bytes(b"j" * (i % 97 + 1))
    with run_emulator(tmp_path / "state", tmp_path / "seed") as e:
        with run_mount(e, tmp_path / "mnt", "--cache-dir", str(tmp_path / "cache"), "--read-only") as m:
            photos = m.path / "photos"
            t0 = time.monotonic()
            # a name beyond the first 5,000 results: asked by name (file/info), never ENOENT or EAGAIN
            assert os.stat(photos / f"p{n - 1:05}.jpg").st_size == (n - 1) % 97 + 1
            first_stat = time.monotonic() - t0
            assert "/photos holds 5000 entries or more" in m.log.read_text()  # the hint (WARNING)
            from fichierfs.control import read_status

            while read_status(m.path)["meta"]["incomplete"]:  # the status says until when ls is partial
                assert time.monotonic() - t0 < 60
                time.sleep(0.2)
            sizes = {p.name: p.stat().st_size for p in photos.iterdir()}
            took = time.monotonic() - t0
            assert len(sizes) == n
            assert all(sizes[f"p{i:05}.jpg"] == i % 97 + 1 for i in range(n))
            calls = e.stats()["calls"]
            print(f"\n6,000-file folder: {took:.1f} s, folder/ls {calls.get('folder/ls')}, "
                  f"file/ls {calls.get('file/ls', 0)} (stat of the last file: {first_stat:.1f} s)")
            assert calls.get("file/ls", 0) <= 3
        before = e.listings()
        with run_mount(e, tmp_path / "mnt", "--cache-dir", str(tmp_path / "cache"), "--read-only") as m:
            assert len(os.listdir(m.path / "photos")) == n  # persisted: complete at once
            assert e.listings() == before


NAMES = {
    "ascii": "a" * 250,
    "euro": "€" * 83 + "é",            # 84 characters, 251 bytes
    "cyrillic": "ж" * 127,             # 254 bytes
    "japanese": "日本語" * 28,          # 84 characters, 252 bytes
    "mixed": "Ωmega-ß-" + "ü" * 120,   # 128 characters
    # 250 characters over Linux's 255 bytes: 1fichier counts characters (§7) and FUSE passes names up
    # to 1024 bytes (such a name cannot be copied to ext4: that is the local disk's limit, not ours)
    "japanese250": ("日本語" * 84)[:250],  # 750 bytes
    "cyrillic250": "ж" * 250,             # 500 bytes
}


def test_names_in_characters_round_trip_and_251_is_enametoolong(emu) -> None:
    e, base = emu
    cache = base / "cache-names"
    mnt = base / "mnt4"
    with run_mount(e, mnt, "--cache-dir", str(cache), "--write-back-delay", "0.2") as m:
        (m.path / "names").mkdir()
        for script, name in NAMES.items():
            (m.path / "names" / name).write_text(script)
        with pytest.raises(OSError) as exc:
            (m.path / "names" / ("b" * 251)).write_text("too long")
        assert exc.value.errno == errno.ENAMETOOLONG
        deadline = time.monotonic() + 60
        while json.loads(os.getxattr(m.path, "user.fichierfs.status")).get("writeback", {}).get("pending", 0):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert "251 characters" in m.log.read_text()
    with run_mount(e, mnt, "--cache-dir", str(cache), "--read-only") as m:
        # re-list from 1fichier (not the persisted copy), then read every name back
        assert sh([PY, "-m", "fichierfs", "refresh", str(m.path / "names")], cwd=ROOT).returncode == 0
        for script, name in NAMES.items():
            assert (m.path / "names" / name).read_text() == script


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q", "-s"]))
