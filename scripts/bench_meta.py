#!/usr/bin/env python3
"""Account-scale metadata benchmark (issue 13): persisted listings, big folders, memory.

Runs the real CLI against the loopback emulator with its limits ON (time-scaled like the
mount tests: emulator ``--time-scale S``, mount ``--budget-scale 1.4 S``) and prints one
table (and ``--json FILE``). Anyone can rerun it (root, /dev/fuse)::

    .venv/bin/python scripts/bench_meta.py                 # all parts, ~3 min on 2 cores
    .venv/bin/python scripts/bench_meta.py --parts tree     # one part

Parts:

* ``tree``: 1,000 folders × 20 files. Cold mount + ``ls -lR`` (listings, seconds), then a
  remount + ``ls -lR``: seconds until the mount is live, seconds for ``ls -lR``, listing
  calls made before it completes (goal: 0 and < 5 s).
* ``big``: one folder of 12,000 files. Cold mount: seconds until ``ls`` shows all of them, the
  seconds a ``stat`` of the last file (beyond the first 5,000) takes, folder/ls + file/ls +
  file/info calls; then after a remount. ``--time-scale 1`` runs it at the real limits.
* ``core``: in-process, 1,000 folders × 100 files: bytes per known entry (tracemalloc),
  seconds to persist everything and to load it back (the start-up of a remount).
* ``scale``: 1,000 folders × 100 files (100,000 files). Cold ``ls -lR``; then a remount: mount
  start-up time from the persisted cache, ``ls -lR`` time, the mount's RSS (VmRSS/VmHWM)
  and RSS per known entry (against an empty mount's RSS).

Seconds measured with the scaled limits are what this machine does; a listing at the real
limits costs ≈ 3.5 s (one per 3 s overall, §4) and ≈ 31 s per folder, so the cold figures
at the real limits are ``listings × 3.5 s`` (or × 31 s for repeated listings of one folder).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.mount.conftest import run_emulator as _run_emulator  # noqa: E402  (the mount tier's helpers)
from tests.mount.conftest import run_mount as _run_mount  # noqa: E402

SCALES = {"emulator": 0.01, "mount": 0.014}
"""--time-scale of the emulator and --budget-scale of the mounts (set from the command line)."""


def run_emulator(state: Path, seed: Path | None = None, *args: str) -> Any:
    return _run_emulator(state, seed, *args, scale=SCALES["emulator"])


def run_mount(emu: Any, mnt: Path, *args: str) -> Any:
    return _run_mount(emu, mnt, "--budget-scale", str(SCALES["mount"]), *args)  # after the default: it wins


def rss(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            k, v = line.split(":", 1)
            out[k] = int(v.split()[0]) * 1024
    return out


def ls_lr(path: Path) -> tuple[float, int]:
    t0 = time.monotonic()
    res = subprocess.run(["ls", "-lR", str(path)], capture_output=True, text=True, timeout=3600)
    assert res.returncode == 0, res.stderr[-500:]
    return time.monotonic() - t0, res.stdout.count("\n")


def seed_tree(dest: Path, folders: int, files: int) -> None:
    for d in range(folders):
        p = dest / f"d{d:04}"
        p.mkdir(parents=True)
        for f in range(files):
            (p / f"f{f:03}.txt").write_bytes(b"x" * (1 + (d + f) % 50))


def listings(emu: Any) -> int:
    return int(emu.listings())


def part_tree(work: Path, folders: int = 1000, files: int = 20) -> dict[str, Any]:
    seed = work / "seed-tree"
    seed_tree(seed, folders, files)
    cache = work / "cache-tree"
    r: dict[str, Any] = {"folders": folders, "files": folders * files}
    with run_emulator(work / "state-tree", seed) as emu:
        with run_mount(emu, work / "mnt", "--cache-dir", str(cache), "--read-only") as m:
            r["cold_ls_s"], _ = ls_lr(m.path)
            r["cold_listings"] = listings(emu)
        before = listings(emu)
        t0 = time.monotonic()
        with run_mount(emu, work / "mnt", "--cache-dir", str(cache), "--read-only") as m:
            r["remount_live_s"] = time.monotonic() - t0
            r["remount_ls_s"], lines = ls_lr(m.path)
            r["remount_listings"] = listings(emu) - before
            r["remount_other_calls"] = {k: v for k, v in emu.stats()["calls"].items() if v}
            r["remount_ls_lines"] = lines
            r["warm_ls_s"], _ = ls_lr(m.path)
    return r


def part_big(work: Path, n: int = 12_000) -> dict[str, Any]:
    seed = work / "seed-big" / "photos"
    seed.mkdir(parents=True)
    for i in range(n):
        (seed / f"p{i:05}.jpg").write_bytes(b"j" * (1 + i % 97))
    cache = work / "cache-big"
    r: dict[str, Any] = {"files": n}
    with run_emulator(work / "state-big", seed.parent) as emu:
        for label in ("cold", "remount"):
            before = emu.stats()["calls"]
            t0 = time.monotonic()
            with run_mount(emu, work / "mnt", "--cache-dir", str(cache), "--read-only") as m:
                first = len(os.listdir(m.path / "photos"))
                t1 = time.monotonic()
                last_size = os.stat(m.path / "photos" / f"p{n - 1:05}.jpg").st_size  # beyond the first 5,000
                stat_unseen = time.monotonic() - t1
                assert last_size == 1 + (n - 1) % 97
                shown = first
                while shown < n and time.monotonic() - t0 < 600:
                    time.sleep(0.2)
                    shown = len(os.listdir(m.path / "photos"))
                took = time.monotonic() - t0
                after = emu.stats()["calls"]
            r[label] = {"seconds": round(took, 2), "first_ls": first, "shown": shown,
                        "stat_of_last_file_s": round(stat_unseen, 2),
                        "file/info": after.get("file/info", 0) - before.get("file/info", 0),
                        "folder/ls": after.get("folder/ls", 0) - before.get("folder/ls", 0),
                        "file/ls": after.get("file/ls", 0) - before.get("file/ls", 0)}
    return r


def part_scale(work: Path, folders: int = 1000, files: int = 100) -> dict[str, Any]:
    seed = work / "seed-scale"
    seed_tree(seed, folders, files)
    cache = work / "cache-scale"
    r: dict[str, Any] = {"folders": folders, "files": folders * files}
    (work / "empty").mkdir()
    with run_emulator(work / "state-empty", work / "empty") as emu:
        with run_mount(emu, work / "mnt", "--cache-dir", str(work / "cache-empty"), "--read-only") as m:
            ls_lr(m.path)
            r["empty_mount_rss"] = rss(m.proc.pid)["VmRSS"]
    with run_emulator(work / "state-scale", seed) as emu:
        with run_mount(emu, work / "mnt", "--cache-dir", str(cache), "--read-only") as m:
            r["cold_ls_s"], _ = ls_lr(m.path)
            r["cold_listings"] = listings(emu)
            r["cold_rss"] = rss(m.proc.pid)
        before = listings(emu)
        t0 = time.monotonic()
        with run_mount(emu, work / "mnt", "--cache-dir", str(cache), "--read-only") as m:
            r["remount_live_s"] = time.monotonic() - t0
            r["remount_ls_s"], _ = ls_lr(m.path)
            r["remount_listings"] = listings(emu) - before
            r["remount_rss"] = rss(m.proc.pid)
            log = m.log.read_text()
            for line in log.splitlines():
                if "metadata cache:" in line and "loaded" in line:
                    r["load_line"] = line.split("metadata cache:", 1)[1].strip()
        db = next(cache.rglob("metadata.db"))
        r["db_bytes"] = db.stat().st_size
    known = folders * (files + 1)
    r["rss_per_entry_bytes"] = round((r["remount_rss"]["VmRSS"] - r["empty_mount_rss"]) / known)
    return r


def part_core(work: Path, folders: int = 1000, files: int = 100) -> dict[str, Any]:
    """In-process: bytes per known entry (tracemalloc) and start-up from the persisted DB."""
    import gc
    import tracemalloc
    from datetime import datetime, timezone

    import trio

    from fichierfs.meta import ROOT_INODE, MetaCache
    from fichierfs.metastore import MetaStore
    from fichierfs.models import FileUrl, FolderId, FolderListing, RemoteFile, RemoteFolder

    def build() -> MetaCache:
        meta = MetaCache(None, 0, clock=time.monotonic)
        base = datetime(2024, 1, 1, tzinfo=timezone.utc).timestamp()
        subs = tuple(RemoteFolder(FolderId(1000 + d), f"d{d:04}", None) for d in range(folders))
        meta.merge(ROOT_INODE, FolderListing(FolderId(0), "", None, subs, ()))
        for d in range(folders):
            fl = tuple(RemoteFile(FileUrl(f"https://1fichier.com/?{d:04}x{f:05}abcdefgh"), f"IMG_{f:05}.jpg",
                                  1000 + f, datetime.fromtimestamp(base + d * files + f, tz=timezone.utc),
                                  "ab" * 64, "image/jpeg", folder_id=FolderId(1000 + d))
                       for f in range(files))
            ino = meta.node_for_folder(1000 + d)
            assert ino is not None
            meta.merge(ino.ino, FolderListing(FolderId(1000 + d), f"d{d:04}", None, (), fl))
        return meta

    r: dict[str, Any] = {"folders": folders, "files": folders * files}
    gc.collect()
    tracemalloc.start()
    meta = build()
    gc.collect()
    used, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    r["entries"] = len(meta)
    r["bytes_per_entry"] = round(used / len(meta))
    store = MetaStore(work / "metadata.db", "bench")
    store.set_root(0, ROOT_INODE)
    meta.store = store
    meta._dirty = {n.ino for n in meta._nodes.values() if n.is_dir}
    t0 = time.monotonic()
    meta.persist_dirty()
    store.flush()
    r["persist_all_s"] = round(time.monotonic() - t0, 2)
    store.close()
    r["db_bytes"] = (work / "metadata.db").stat().st_size

    async def load() -> float:
        t1 = time.monotonic()
        st = MetaStore(work / "metadata.db", "bench")
        snap = st.load()
        assert snap is not None
        m2 = MetaCache(None, 0)
        m2.load(snap)
        assert len(m2) == len(meta)
        st.close()
        return time.monotonic() - t1

    r["startup_load_s"] = round(trio.run(load), 2)
    return r


PARTS = {"tree": part_tree, "big": part_big, "scale": part_scale, "core": part_core}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", default="core,tree,big,scale")
    p.add_argument("--time-scale", type=float, default=0.01,
                   help="emulator limit windows × this (default 0.01; the mount gets 1.4 ×)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    SCALES["emulator"] = args.time_scale
    SCALES["mount"] = round(args.time_scale * 1.4, 6) if args.time_scale < 1 else 1.0  # the product's own at 1
    out: dict[str, Any] = {"time_scale": args.time_scale, "budget_scale": SCALES["mount"]}
    with tempfile.TemporaryDirectory(prefix="bench-meta-") as tmp:
        for name in args.parts.split(","):
            work = Path(tmp) / name
            work.mkdir()
            t0 = time.monotonic()
            out[name] = PARTS[name](work)
            out[name]["part_seconds"] = round(time.monotonic() - t0, 1)
            print(name, json.dumps(out[name], indent=1, default=str), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
