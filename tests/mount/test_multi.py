"""Several mounts of one account (issue 14), asserted from the emulator's counters.

* two mounts on one host, no option (the built-in host budget), ``ls -lR`` and ``find`` in both
  at once → 0 flood locks; the same with a remount on another ``--cache-dir`` right after an
  unmount → 0 flood locks;
* two mounts "on two hosts" through a real redis-server (``--coordinator redis://``): listings,
  reads and writes at once → 0 flood locks; killing redis mid-run loses nothing, earns no lock.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.mount.conftest import run_emulator, run_mount
from tests.redis_rig import run_redis

FOLDERS = 6
FILES = 4


def _seed(base: Path) -> Path:
    seed = base / "seed"
    for top in ("a", "b"):
        for d in range(FOLDERS):
            folder = seed / top / f"d{d}"
            folder.mkdir(parents=True)
            for f in range(FILES):
                (folder / f"f{f}.txt").write_text(f"{top}/{d}/{f}\n" * (f + 1))
    return seed


def _at_once(*cmds: list[str]) -> list[subprocess.CompletedProcess[str]]:
    out: list[subprocess.CompletedProcess[str]] = [None] * len(cmds)  # type: ignore[list-item]

    def run(i: int, cmd: list[str]) -> None:
        out[i] = subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(cmds)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def _status(mnt: Path) -> dict:
    # os.getxattr grows its buffer on ERANGE; getfattr's size-then-read can lose the race against a
    # status document that grows between its two calls (a busy mount)
    return dict(json.loads(os.getxattr(mnt, "user.fichierfs.status")))


def test_two_mounts_on_one_host_share_the_budget(tmp_path: Path) -> None:
    seed = _seed(tmp_path)
    with run_emulator(tmp_path / "state", seed) as emu:
        with run_mount(emu, tmp_path / "ma", "--remote-folder", "/a", "--cache-dir", str(tmp_path / "ca")) as a, \
                run_mount(emu, tmp_path / "mb", "--remote-folder", "/b", "--cache-dir", str(tmp_path / "cb")) as b:
            t0 = time.monotonic()
            res = _at_once(["ls", "-lR", str(a.path)], ["ls", "-lR", str(b.path)],
                           ["find", str(a.path), "-type", "f"], ["find", str(b.path), "-type", "f"])
            took = time.monotonic() - t0
            assert all(r.returncode == 0 for r in res), [r.stderr for r in res]
            assert res[2].stdout.count("\n") == FOLDERS * FILES == res[3].stdout.count("\n")
            sa = _status(a.path)
            assert _status(b.path)["api"]["coordinator"]["kind"] == "host"
            assert sa["api"]["coordinator"]["kind"] == "host"
        stats = emu.stats()
        print(f"\ntwo mounts, one host, built in: {stats['flood_locks']} flood locks, "
              f"{emu.listings()} listings, ls -lR + find {took:.1f} s")
        assert stats["flood_locks"] == 0
        # unmount, then at once a mount of the same folder with another cache dir, then with another
        # key of the account: the budget belongs to the host, not to a cache dir or a key
        with run_mount(emu, tmp_path / "ma", "--remote-folder", "/a", "--cache-dir", str(tmp_path / "c2")) as a2:
            r = subprocess.run(["ls", "-lR", str(a2.path)], capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr
        with run_mount(emu, tmp_path / "ma", "--remote-folder", "/a", "--cache-dir", str(tmp_path / "c3"),
                       env={"FICHIER_API_KEY": "emu-another-key-of-the-account"}) as a3:
            r = subprocess.run(["ls", "-lR", str(a3.path)], capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr
        assert emu.stats()["flood_locks"] == 0


def _wait_synced(mnt: Path, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        doc = _status(mnt)
        if doc.get("writeback", {}).get("pending", 0) == 0:
            return doc
        assert time.monotonic() < deadline, f"not synced after {timeout} s: {doc.get('writeback')}"
        time.sleep(0.2)


def _work(mnt: Path, tag: str, n: int) -> list[list[str]]:
    """``ls -lR``, a read of every file, and ``n`` new files written, for one mount."""
    write = f"mkdir -p {mnt}/d0/new-{tag} && for i in $(seq {n}); do echo {tag}-$i > {mnt}/d0/new-{tag}/f$i; done"
    return [["ls", "-lR", str(mnt)], ["sh", "-c", f"find {mnt} -name 'new-*' -prune -o -type f -exec cat {{}} + | wc -c"], ["sh", "-c", write]]


def test_two_hosts_through_redis(tmp_path: Path) -> None:
    seed = _seed(tmp_path)
    with run_redis(tmp_path / "redis") as redis, run_emulator(tmp_path / "state", seed) as emu:
        coord = ("--coordinator", redis.url)
        with run_mount(emu, tmp_path / "ha", "--remote-folder", "/a", "--cache-dir", str(tmp_path / "ca"), *coord) as a, \
                run_mount(emu, tmp_path / "hb", "--remote-folder", "/a", "--cache-dir", str(tmp_path / "cb"), *coord,
                          "--source-address", "127.0.0.2") as b:  # another host to the emulator's per-IP rules
            assert _status(a.path)["api"]["coordinator"]["state"] == "ok"
            before = emu.listings()
            res = _at_once(["ls", "-lR", str(a.path)], ["ls", "-lR", str(b.path)])
            assert all(r.returncode == 0 for r in res), [r.stderr for r in res]
            listed = emu.listings() - before
            print(f"\ntwo hosts, redis: ls -lR on both → {listed} listings for {FOLDERS} folders")
            assert listed <= FOLDERS  # at most one listing per folder across both mounts
            res = _at_once(*_work(a.path, "A", 5), *_work(b.path, "B", 5))
            assert all(r.returncode == 0 for r in res), [r.stderr for r in res]
            assert res[1].stdout.strip() == res[4].stdout.strip()  # the same bytes read on both
            _wait_synced(a.path)
            _wait_synced(b.path)
            assert emu.stats()["flood_locks"] == 0

            # each host shows the other's new folder and files, renamed and removed ones too, without
            # listing again: the changes come through the coordinator (fichierfs.listshare)
            (a.path / "d0" / "new-A" / "f1").rename(a.path / "d0" / "new-A" / "g1")
            (a.path / "d0" / "new-A" / "f2").unlink()
            before = emu.listings()
            want_a, want_b = ["f3", "f4", "f5", "g1"], ["f1", "f2", "f3", "f4", "f5"]
            _eventually(lambda: sorted(os.listdir(b.path / "d0" / "new-A")) == want_a
                        and sorted(os.listdir(a.path / "d0" / "new-B")) == want_b, "changes not seen on the other host")
            assert (b.path / "d0" / "new-A" / "g1").read_text() == "A-1\n"
            assert emu.listings() == before  # 0 listing calls for the changed folders
            assert _status(b.path)["listshare"]["applied"] >= 5

            # an mtime and a mode set on A are seen on B (1fichier keeps neither: shared by the coordinator)
            subprocess.run(["touch", "-c", "-d", "2001-02-03 04:05:06.789", str(a.path / "d2" / "f1.txt")], check=True)
            (a.path / "d2" / "f2.txt").chmod(0o600)
            want = (a.path / "d2" / "f1.txt").stat().st_mtime_ns
            deadline = time.monotonic() + 10
            while ((b.path / "d2" / "f1.txt").stat().st_mtime_ns != want
                   or (b.path / "d2" / "f2.txt").stat().st_mode & 0o777 != 0o600):
                assert time.monotonic() < deadline, ("B never saw the mtime/mode set on A",
                                                     _status(a.path).get("attrshare"), _status(b.path).get("attrshare"),
                                                     (b.path / "d2" / "f1.txt").stat(), want)
                time.sleep(0.2)

            # the coordinator dies mid-run: nothing lost, no lock, said in status; back → rejoined
            res_box: list[list[subprocess.CompletedProcess[str]]] = []
            t = threading.Thread(target=lambda: res_box.append(_at_once(*_work(a.path, "A2", 8), *_work(b.path, "B2", 8))))
            t.start()
            time.sleep(0.5)
            redis.stop()
            t.join()
            assert all(r.returncode == 0 for r in res_box[0]), [r.stderr for r in res_box[0]]
            _wait_synced(a.path)
            _wait_synced(b.path)
            st = _status(a.path)["api"]["coordinator"]
            assert st["state"] == "fallback" and st["fallbacks"] >= 1
            assert "coordinator" in a.log.read_text() and "unreachable" in a.log.read_text()
            redis.start()
            deadline = time.monotonic() + 20
            while _status(a.path)["api"]["coordinator"]["state"] != "ok":
                assert time.monotonic() < deadline, "did not rejoin the coordinator"
                time.sleep(0.3)
        stats = emu.stats()
        print(f"two hosts, redis: stats {json.dumps({k: v for k, v in stats.items() if k != 'calls'})}")
        assert stats["flood_locks"] == 0
        assert stats.get("location_refusals", 0) == 0  # §3 #887: the hosts took turns to download
        files = _remote_files(emu.state)
        for tag, n in (("B", 5), ("A2", 8), ("B2", 8)):  # every file written reached 1fichier, once
            assert sorted(files.get(f"new-{tag}", [])) == sorted(f"f{i}" for i in range(1, n + 1)), tag
        assert sorted(files["new-A"]) == want_a  # renamed and removed on A


def _eventually(ok: Callable[[], bool], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_rsync_from_a_second_mount_transfers_nothing(tmp_path: Path) -> None:
    """``rsync -a`` through mount A, then the same through mount B of the account (host budget, no
    option): B learns A's files from A's changes and their times from the shared attributes, so
    its rsync transfers no file and uploads nothing — files B had never listed included; so does
    a mount C started afterwards (it lists, and finds the times in the shared attributes)."""
    src = tmp_path / "src"
    for d in ("x", "y"):
        (src / d).mkdir(parents=True)
        for i in range(3):
            (src / d / f"f{i}.txt").write_text(f"{d}{i}\n" * (i + 1))
            os.utime(src / d / f"f{i}.txt", (981173106 + i, 981173106 + i))
    with run_emulator(tmp_path / "state") as emu, run_mount(emu, tmp_path / "ma") as a, \
            run_mount(emu, tmp_path / "mb") as b:
        os.listdir(b.path)  # B has listed the root, before A writes
        subprocess.run(["rsync", "-a", f"{src}/", str(a.path / "r")], check=True, timeout=60)
        _wait_synced(a.path)
        uploads, listed = emu.stats()["calls"]["upload.cgi"], emu.listings()

        def b_sees_it() -> bool:
            r = subprocess.run(["rsync", "-a", "-n", "--out-format=%n", f"{src}/", str(b.path / "r")],
                               capture_output=True, text=True, timeout=60)
            return r.returncode == 0 and not [n for n in r.stdout.split() if not n.endswith("/")]

        _eventually(b_sees_it, "B's dry run still wants to transfer files")
        r = subprocess.run(["rsync", "-a", "--stats", f"{src}/", str(b.path / "r")], capture_output=True, text=True,
                           check=True, timeout=60)
        print(f"\nrsync -a from the second mount: {r.stdout.strip().splitlines()[1:3]}, "
              f"{emu.listings() - listed} listings")
        assert "Number of regular files transferred: 0" in r.stdout
        _wait_synced(b.path)
        assert emu.stats()["calls"]["upload.cgi"] == uploads  # B uploaded nothing
        assert emu.listings() == listed  # and listed nothing: A's new folders came as changes
        with run_mount(emu, tmp_path / "mc") as c:  # a mount started afterwards lists, and knows the times
            r = subprocess.run(["rsync", "-a", "--stats", f"{src}/", str(c.path / "r")], capture_output=True,
                               text=True, check=True, timeout=60)
            assert "Number of regular files transferred: 0" in r.stdout
            _wait_synced(c.path)
        assert emu.stats()["calls"]["upload.cgi"] == uploads
        assert emu.stats()["flood_locks"] == 0


def _remote_files(state: Path) -> dict[str, list[str]]:
    """folder name → file names, straight from the emulator's account database."""
    import sqlite3

    db = sqlite3.connect(f"file:{state / 'account.sqlite3'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT folders.name, files.filename FROM files JOIN folders ON files.folder_id = folders.id")
        out: dict[str, list[str]] = {}
        for folder, name in rows:
            out.setdefault(folder, []).append(name)
        return out
    finally:
        db.close()
