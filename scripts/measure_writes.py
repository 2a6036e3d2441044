#!/usr/bin/env python3
"""Measure the write side against the loopback emulator (issue 12 "Measure"): API calls, wall time, RSS.

Workloads (each on a fresh emulator and cache, limits ON):

* ``copyin`` — ``cp -r`` of 1,000 small real files in 10 folders + one 256 MiB file, then
  ``fichierfs sync``: upload-side calls (get_upload_server + upload.cgi + end.pl), seconds
  until sync returned, peak RSS of the mount (VmHWM).
* ``gitclone`` — a real ``git clone`` (``--no-local``, so git writes its object store the
  way a network clone would, plus checkout) of a ~250-file repository built from Python's
  own library sources, into the mount, then ``fichierfs sync``: metered calls, seconds.

``--time-scale`` scales the emulator's limits and fichierfs's budgets together (1 = 1fichier's
real limits). ``--repo DIR`` runs another checkout's code (e.g. the previous main) for a
"before" figure. Prints one JSON line per workload.

Usage: scripts/measure_writes.py [--workloads copyin,gitclone] [--time-scale 1] [--big 256M] [--repo DIR]
       [--git-pack]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEY = "emu-measure-key-0123456789abcdef"
UPLOAD_SIDE = ("upload/get_upload_server", "upload.cgi", "end.pl")
UNMETERED = ("upload.cgi", "end.pl", "download")


def real_files(dest: Path, folders: int, per_folder: int) -> None:
    lib = Path(sysconfig.get_paths()["stdlib"])
    picked = [p for p in sorted(lib.rglob("*.py")) if p.is_file() and 0 < p.stat().st_size < 100_000]
    for i, p in enumerate(picked[: folders * per_folder]):
        d = dest / f"d{i // per_folder:02}"
        d.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, d / f"{i:04d}-{p.name}")


sys.path.insert(0, str(ROOT / "scripts"))
from bench_kit.workloads._git import git_repo  # noqa: E402  (one definition, shared with scripts/bench)


class Rig:
    def __init__(self, repo: Path, base: Path, scale: float) -> None:
        self.repo, self.base, self.scale = repo, base, scale
        self.py = str(repo / ".venv" / "bin" / "python")
        self.emu: subprocess.Popen[bytes] | None = None
        self.mount: subprocess.Popen[bytes] | None = None
        self.mnt = base / "mnt"
        self.url = ""
        # at 1fichier's real limits fichierfs runs with its own defaults; scaled runs keep the
        # bench's margin (scripts/bench: budget 1.4 × the emulator's time scale)
        self.budget_scale = 1.0 if scale == 1.0 else scale * 1.4

    def start(self) -> None:
        state = self.base / "state"
        self.emu = subprocess.Popen([self.py, "-m", "fichierfs", "emulator", "--state", str(state),
                                     "--time-scale", str(self.scale)], stdout=subprocess.PIPE,
                                    stderr=open(self.base / "emu.log", "wb"), cwd=self.repo)  # noqa: SIM115
        assert self.emu.stdout is not None
        line = self.emu.stdout.readline().decode().strip()
        self.url = line.split("=", 1)[1]
        self.mnt.mkdir(exist_ok=True)
        self.mount = subprocess.Popen(
            [self.py, "-m", "fichierfs", "mount", "-f", "--api-url", self.url, "--budget-scale", str(self.budget_scale),
             "--cache-dir", str(self.base / "cache"), "--log-file", str(self.base / "mount.log"), str(self.mnt)],
            env={**os.environ, "FICHIER_API_KEY": KEY}, cwd=self.repo, stdout=subprocess.DEVNULL,
            stderr=open(self.base / "mount.err", "wb"))  # noqa: SIM115
        deadline = time.monotonic() + 120
        while not os.path.ismount(self.mnt):
            if self.mount.poll() is not None:
                raise SystemExit(f"mount failed: {(self.base / 'mount.err').read_text()[-2000:]}")
            assert time.monotonic() < deadline
            time.sleep(0.1)

    def stats(self) -> dict:
        with urllib.request.urlopen(self.url.removesuffix("/v1") + "/_emulator/stats", timeout=10) as r:
            return json.load(r)

    def sync(self) -> float:
        t0 = time.monotonic()
        subprocess.run([self.py, "-m", "fichierfs", "sync", "-q", str(self.mnt)], check=True, cwd=self.repo)
        return time.monotonic() - t0

    def rss_peak(self) -> int:
        assert self.mount is not None
        for line in Path(f"/proc/{self.mount.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)], check=False)
        for p in (self.mount, self.emu):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def summary(name: str, rig: Rig, calls0: dict, seconds: float, extra: dict) -> dict:
    calls = {k: v - calls0.get(k, 0) for k, v in rig.stats()["calls"].items() if v - calls0.get(k, 0)}
    try:
        wb = json.loads(os.getxattr(rig.mnt, "user.fichierfs.status")).get("writeback") or {}
    except OSError:
        wb = {}
    journal = {k: wb[k] for k in ("journal_commits", "journal_commit_seconds", "journal_commit_max") if k in wb}
    return {"workload": name, "seconds": round(seconds, 1),
            "upload_side_calls": sum(calls.get(k, 0) for k in UPLOAD_SIDE),
            "metered_calls": sum(v for k, v in calls.items() if k not in UNMETERED),
            "calls": calls, "peak_rss_mib": round(rig.rss_peak() / (1 << 20), 1),
            "flood_locks": rig.stats().get("flood_locks"), **journal, **extra}


def copyin(rig: Rig, work: Path, big: int) -> dict:
    src = work / "src"
    real_files(src, 10, 100)
    with open(src / "big.bin", "wb") as f:
        block = os.urandom(1 << 20)
        for _ in range(big >> 20):
            f.write(block)
    calls0 = rig.stats()["calls"]
    t0 = time.monotonic()
    subprocess.run(f"cp -r {src}/* {rig.mnt}/", shell=True, check=True)
    t_cp = time.monotonic() - t0
    rig.sync()
    return summary("copyin", rig, calls0, time.monotonic() - t0, {"cp_seconds": round(t_cp, 1), "files": 1001})


def gitclone(rig: Rig, work: Path, loose: bool = True) -> dict:
    repo = work / "repo"
    git_repo(repo, 250)
    calls0 = rig.stats()["calls"]
    t0 = time.monotonic()
    cmd = ["git", "clone", "-q", "--no-local", str(repo), str(rig.mnt / "clone")]
    subprocess.run(cmd, check=True)
    if loose:  # git clone always keeps a pack: unpack it into loose objects (~100+ folders)
        objects = rig.mnt / "clone" / ".git" / "objects" / "pack"
        for pack in sorted(objects.glob("*.pack")):
            data = pack.read_bytes()
            pack.unlink()
            pack.with_suffix(".idx").unlink()
            subprocess.run(["git", "-C", str(rig.mnt / "clone"), "unpack-objects", "-q"], input=data, check=True)
    t_clone = time.monotonic() - t0
    rig.sync()
    folders = sum(1 for p in (rig.mnt / "clone").rglob("*") if p.is_dir()) + 1
    files = sum(1 for p in (rig.mnt / "clone").rglob("*") if p.is_file())
    return summary("gitclone", rig, calls0, time.monotonic() - t0,
                   {"clone_seconds": round(t_clone, 1), "folders": folders, "files": files,
                    "objects": "loose" if loose else "pack"})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workloads", default="copyin,gitclone")
    ap.add_argument("--time-scale", type=float, default=1.0, help="emulator limits × this (1 = real limits)")
    ap.add_argument("--big", default="256M", help="size of the big file of copyin (e.g. 256M)")
    ap.add_argument("--git-pack", action="store_true", help="gitclone: keep git's pack (fewer files and folders)")
    ap.add_argument("--repo", type=Path, default=ROOT, help="checkout whose code runs (its .venv)")
    a = ap.parse_args()
    big = int(a.big.rstrip("Mm")) << 20
    for name in a.workloads.split(","):
        with tempfile.TemporaryDirectory(prefix=f"fichierfs-measure-{name}-") as tmp:
            work = Path(tmp)
            rig = Rig(a.repo.resolve(), work, a.time_scale)
            try:
                rig.start()
                out = copyin(rig, work, big) if name == "copyin" else gitclone(rig, work, not a.git_pack)
            finally:
                rig.stop()
            out.update(time_scale=a.time_scale, repo=str(a.repo))
            print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
