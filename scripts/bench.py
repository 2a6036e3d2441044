#!/usr/bin/env python3
"""Side-by-side benchmark: fichierfs against Debian's ``rclone mount`` (fichier backend).

Run it through ``scripts/bench`` (does the set-up first). What it does:

1. builds a seed tree (generated data plus real files from this machine) and starts ONE
   loopback 1fichier emulator on 127.0.0.1:443 (TLS, throwaway trustme CA) with the documented
   limits ON, a per-request latency and a per-connection bandwidth cap, seeded once;
2. runs everything inside a private mount + network namespace (``unshare -m -n``) where a
   temporary hosts file maps api.1fichier.com & co. to 127.0.0.1 (the arrangement of
   tests/fidelity, whose helpers it imports): rclone's API URL is compiled in, so this is
   how it reaches the emulator; the private network namespace keeps port 443 and every
   byte of traffic away from the host (and from a fidelity test running at the same time);
3. for every workload, run and mount kind: resets the emulator's counters and lifts any
   flood lock, mounts afresh (fichierfs with its defaults; rclone with
   ``--vfs-cache-mode writes``), runs the workload cold (and warm where it matters) under a
   time-out, and records wall time, API calls per endpoint, flood locks, bytes moved and the
   mount process's peak RSS (VmHWM);
4. writes BENCHMARKS.md (tables, ratios, machine, versions, command line), bench-chart.png
   and bench-results.json into ``--output``.

The emulator's limit windows are multiplied by ``--time-scale`` (default 0.1) so that a full
run stays short; fichierfs is told ``--budget-scale 1.4 x`` that, the same margin as its own
mount tests. rclone cannot be scaled: its 400 ms pacer meets the scaled limits as it is.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import errno
import hashlib
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PY = sys.executable
KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
MOUNTS = ("fichierfs", "rclone")
WORKLOADS = ("ls", "heads", "seqread", "randread", "copyin", "tar")
RC_ADDR = "127.0.0.1:5572"
NA_WRITE = "n/a: write side not available"


# ------------------------------------------------------------------------------------------
# sizes


@dataclass(frozen=True)
class Sizes:
    tree_folders: int
    tree_files: int           # per folder
    heads_files: int
    heads_size: tuple[int, int]   # each head-storm file is between these sizes (bytes)
    big_size: int
    fio_seconds: int
    copy_small: int
    copy_big: int
    tar_dirs: tuple[str, ...]     # subdirectories of the Python stdlib put in the tarball
    runs: int
    timeout: float


FULL = Sizes(tree_folders=50, tree_files=100, heads_files=200, heads_size=(1 * MiB, 3 * MiB),
             big_size=1 * GiB, fio_seconds=30, copy_small=1000, copy_big=256 * MiB,
             tar_dirs=("asyncio", "email", "json", "http", "urllib", "logging", "xml", "concurrent",
                       "importlib", "unittest", "multiprocessing", "collections", "sqlite3", "wsgiref",
                       "xmlrpc", "html", "ctypes", "curses", "dbm", "encodings", "tomllib", "zoneinfo"),
             runs=3, timeout=600.0)
QUICK = Sizes(tree_folders=4, tree_files=15, heads_files=12, heads_size=(256 * KiB, 512 * KiB),
              big_size=24 * MiB, fio_seconds=2, copy_small=30, copy_big=4 * MiB,
              tar_dirs=("json",), runs=1, timeout=8.0)

HEAD = 64 * KiB


# ------------------------------------------------------------------------------------------
# small helpers


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sh(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)


def first_line(cmd: list[str]) -> str:
    try:
        out = sh(cmd, timeout=30)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unavailable"


def is_mounted(path: Path) -> bool:
    from tests.mount.conftest import is_mounted as _is_mounted

    return _is_mounted(path)


def vm_hwm_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def stop_proc(proc: subprocess.Popen[Any] | None, grace: float = 15.0) -> None:
    """Stop one process we started, by its PID (TERM, then KILL)."""
    if proc is None:
        return
    from tests.fidelity.conftest import _stop

    _stop(proc, grace)


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """Kill a workload we started in its own process group (its pgid is its PID)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def fuse_abort(path: Path) -> bool:
    """Abort the FUSE connection of a mount (fails every pending request at once): a process stuck in
    a FUSE request is not killable until the file system answers, and a flood-locked rclone answers only
    after its low-level retries (~40 s)."""
    target = str(path.resolve())
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            if parts[4] == target:
                minor = parts[2].split(":")[1]
                ctl = Path("/sys/fs/fuse/connections") / minor / "abort"
                try:
                    ctl.write_text("1")
                    return True
                except OSError:
                    return False
    return False


def mount_fusectl() -> None:
    """Mount fusectl (private to our namespace) so that fuse_abort works."""
    conn = Path("/sys/fs/fuse/connections")
    with open("/proc/self/mounts") as f:
        if any(line.split()[1] == str(conn) for line in f):
            return
    sh(["mount", "-t", "fusectl", "fusectl", str(conn)], timeout=30)


def unmount(path: Path) -> None:
    if is_mounted(path):
        sh(["fusermount3", "-u", "-z", str(path)], timeout=30)


def human_bytes(n: float | None) -> str:
    if n is None:
        return "–"
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


# ------------------------------------------------------------------------------------------
# the seed and the local inputs (deterministic)


def _rand_file(path: Path, size: int, rng: random.Random) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 8 * MiB)
            f.write(rng.randbytes(n))
            left -= n


def real_small_files(n: int) -> list[Path]:
    """n real regular files of 1 B..64 KiB from this machine (Debian docs, man pages, licenses)."""
    out: list[Path] = []
    seen: set[str] = set()
    for base in ("/usr/share/doc", "/usr/share/man", "/usr/share/common-licenses", "/usr/share/locale"):
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in sorted(filenames):
                p = Path(dirpath) / name
                try:
                    if p.is_symlink() or not p.is_file() or not 0 < p.stat().st_size <= 64 * KiB:
                        continue
                except OSError:
                    continue
                key = str(p.relative_to(base)).replace("/", "--")
                if key in seen:
                    continue
                seen.add(key)
                out.append(p)
                if len(out) == n:
                    return out
    return out


def build_inputs(work: Path, sz: Sizes) -> dict[str, Any]:
    """Seed tree (uploaded into the emulator once) and the local inputs of the write workloads."""
    rng = random.Random(20240606)
    seed = work / "seed"
    info: dict[str, Any] = {}
    # ls -lR tree: folders x files, small generated files
    for d in range(sz.tree_folders):
        for i in range(sz.tree_files):
            p = seed / "tree" / f"dir{d:03d}" / f"file{i:04d}.dat"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(rng.randbytes(rng.randint(200, 4000)))
    info["tree_files"] = sz.tree_folders * sz.tree_files
    info["tree_dirs"] = sz.tree_folders
    # head storm: files bigger than 64 KiB; remember the sha256 of each head
    heads: dict[str, str] = {}
    for i in range(sz.heads_files):
        name = f"photo{i:04d}.jpg"
        p = seed / "heads" / name
        _rand_file(p, rng.randint(*sz.heads_size), rng)
        with open(p, "rb") as f:
            heads[name] = hashlib.sha256(f.read(HEAD)).hexdigest()
    (work / "heads.json").write_text(json.dumps(heads))
    # the big file for sequential and random reads
    big = seed / "big" / "big.bin"
    _rand_file(big, sz.big_size, rng)
    crc = 0
    with open(big, "rb") as f:
        while chunk := f.read(8 * MiB):
            crc = zlib.crc32(chunk, crc)
    info["big_crc"] = crc
    info["big_size"] = sz.big_size
    # copy-in source: real small files in 10 folders + one big generated file
    src = work / "copyin"
    files = real_small_files(sz.copy_small)
    per = max(1, (len(files) + 9) // 10)
    for i, p in enumerate(files):
        dst = src / f"set{i // per:02d}" / (str(p).strip("/").replace("/", "--")[-120:])
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dst)
    _rand_file(src / "big-256.bin", sz.copy_big, rng)
    info["copy_small"] = len(files)
    info["copy_bytes"] = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())
    # tarball of real source code (a subset of this machine's Python standard library)
    stdlib = Path(f"/usr/lib/python3.{sys.version_info.minor}")
    if not stdlib.is_dir():
        stdlib = Path(os.__file__).parent
    tarball = work / "source.tar"
    n_tar = 0
    with tarfile.open(tarball, "w") as tar:
        for sub in sz.tar_dirs:
            base = stdlib / sub
            if not base.is_dir():
                continue
            for p in sorted(base.rglob("*.py")):
                if "__pycache__" in p.parts or "test" in p.parts or "tests" in p.parts or p.stat().st_size == 0:
                    continue
                tar.add(p, arcname=f"stdlib/{p.relative_to(stdlib)}", recursive=False)
                n_tar += 1
    info["tar_files"] = n_tar
    info["tar_source"] = f"{stdlib} ({', '.join(sz.tar_dirs)}; *.py)"
    info["tar_bytes"] = tarball.stat().st_size
    return info


# ------------------------------------------------------------------------------------------
# workers: each workload body runs in its own process (own process group, killable on time-out)


def _flush(spec: str) -> dict[str, Any]:
    """Wait until the mount has uploaded everything. spec = 'fichierfs:MNT' or 'rclone:URL'."""
    kind, _, arg = spec.partition(":")
    t0 = time.monotonic()
    if kind == "fichierfs":
        mnt = arg
        probe = subprocess.run([PY, "-m", "fichierfs", "sync", "--help"], check=False, capture_output=True, cwd=ROOT)
        if probe.returncode == 0:
            r = subprocess.run([PY, "-m", "fichierfs", "sync", mnt], check=False, capture_output=True, text=True, cwd=ROOT)
            if r.returncode != 0:
                raise RuntimeError(f"fichierfs sync failed rc={r.returncode}: {r.stderr[-500:]}")
            return {"flush": "fichierfs sync", "flush_s": time.monotonic() - t0}
        while True:  # fallback: poll the status xattr
            doc = json.loads(os.getxattr(mnt, "user.fichierfs.status"))
            wb = doc.get("writeback")
            if not wb or (not wb.get("pending") and not wb.get("uploading")):
                return {"flush": "status xattr", "flush_s": time.monotonic() - t0}
            time.sleep(0.2)
    if kind == "rclone":
        url = arg.rstrip("/") + "/vfs/stats"
        while True:
            req = urllib.request.Request(url, data=b"{}", method="POST",
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as r:
                doc = json.load(r)
            dc = doc.get("diskCache", {})
            if not dc.get("uploadsInProgress") and not dc.get("uploadsQueued"):
                return {"flush": "rclone rc vfs/stats", "flush_s": time.monotonic() - t0}
            time.sleep(0.2)
    raise ValueError(spec)


def _make_dest(dst: str) -> None:
    try:
        os.mkdir(dst)
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSYS, errno.ENOTSUP):
            print(json.dumps({"na": f"{NA_WRITE} (mkdir: {os.strerror(exc.errno)})"}))
            raise SystemExit(3) from None
        raise


def worker(kind: str, args: list[str]) -> int:
    out: dict[str, Any] = {}
    if kind == "heads":
        folder, expected_file = args
        expected = json.loads(Path(expected_file).read_text())
        names = sorted(os.listdir(folder))  # a file manager lists the folder first
        bad, nbytes = [], 0
        for name in names:
            with open(os.path.join(folder, name), "rb") as f:
                data = f.read(HEAD)
            nbytes += len(data)
            if hashlib.sha256(data).hexdigest() != expected.get(name):
                bad.append(name)
        out = {"files": len(names), "bytes": nbytes, "bad": bad}
        print(json.dumps(out))
        return 1 if bad or len(names) != len(expected) else 0
    if kind == "seqread":
        path, size, crc = args[0], int(args[1]), int(args[2])
        buf = bytearray(1 * MiB)
        view = memoryview(buf)
        got, c = 0, 0
        t0 = time.monotonic()
        with open(path, "rb", buffering=0) as f:
            while n := f.readinto(buf):
                c = zlib.crc32(view[:n], c)
                got += n
        dt = time.monotonic() - t0
        out = {"bytes": got, "crc_ok": c == crc, "read_s": dt, "mib_s": got / MiB / dt if dt else None}
        print(json.dumps(out))
        return 0 if got == size and c == crc else 1
    if kind == "copyin":
        src, dst, flush = args
        _make_dest(dst)
        t0 = time.monotonic()
        r = subprocess.run(["cp", "-r", src + "/.", dst + "/"], check=False, capture_output=True, text=True)
        out["cp_s"] = time.monotonic() - t0
        if r.returncode != 0:
            if "Read-only file system" in r.stderr or "Permission denied" in r.stderr:
                print(json.dumps({"na": f"{NA_WRITE} (cp: {r.stderr.strip().splitlines()[0][-200:]})"}))
                return 3
            print(json.dumps({"error": r.stderr[-800:]}))
            return 1
        out.update(_flush(flush))
        print(json.dumps(out))
        return 0
    if kind == "tar":
        tarball, sums, dst, flush = args
        _make_dest(dst)
        t0 = time.monotonic()
        r = subprocess.run(["tar", "-xf", tarball, "-C", dst], check=False, capture_output=True, text=True)
        out["tar_s"] = time.monotonic() - t0
        if r.returncode != 0:
            if "Read-only file system" in r.stderr or "Permission denied" in r.stderr:
                print(json.dumps({"na": f"{NA_WRITE} (tar: {r.stderr.strip().splitlines()[0][-200:]})"}))
                return 3
            print(json.dumps({"error": r.stderr[-800:]}))
            return 1
        out.update(_flush(flush))
        t1 = time.monotonic()
        r = subprocess.run(["sha256sum", "--quiet", "-c", sums], check=False, capture_output=True, text=True, cwd=dst)
        out["check_s"] = time.monotonic() - t1
        out["checksums_ok"] = r.returncode == 0
        if r.returncode != 0:
            out["error"] = (r.stdout + r.stderr)[-800:]
        print(json.dumps(out))
        return r.returncode
    raise SystemExit(f"unknown worker {kind}")


# ------------------------------------------------------------------------------------------
# results


@dataclass
class Run:
    mount: str           # fichierfs | rclone | wire
    workload: str
    phase: str           # cold | warm | -
    run: int
    status: str          # ok | timed out | failed | failed (flood-locked) | n/a ...
    wall: float | None
    calls: dict[str, int] = field(default_factory=dict)
    flood_locks: int = 0
    bytes_down: int = 0
    bytes_up: int = 0
    rss_kib: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    pass_: str = "main"  # main | reference

    @property
    def ok(self) -> bool:
        return self.status == "ok"


# ------------------------------------------------------------------------------------------
# the run inside the namespace


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        from tests.fidelity.conftest import Fidelity

        self.args = args
        self.sz = QUICK if args.quick else FULL
        if args.runs:
            self.sz = Sizes(**{**self.sz.__dict__, "runs": args.runs})
        if args.timeout:
            self.sz = Sizes(**{**self.sz.__dict__, "timeout": args.timeout})
        if args.big_size:
            from fichierfs.config import parse_size

            self.sz = Sizes(**{**self.sz.__dict__, "big_size": parse_size(args.big_size)})
        self.work = work
        self.logs = work / "logs"
        self.logs.mkdir(exist_ok=True)
        self.fx = Fidelity(work, self.logs)
        self.fx.api_key = (work / "api-key").read_text().strip()
        self.emu: subprocess.Popen[bytes] | None = None
        self.runs: list[Run] = []
        self.info: dict[str, Any] = {}
        self.seq = 0
        self.urls: dict[str, str] = {}
        self.pass_ = "main"
        self.scale = args.time_scale

    # -- emulator ---------------------------------------------------------------------------
    def start_emulator(self, seed: bool = True) -> None:
        a = self.args
        cmd = [PY, "-m", "fichierfs.emulator", "--host", "127.0.0.1", "--port", "443",
               "--state", str(self.fx.state), "--tls-cert", str(self.fx.cert_pem), "--tls-key", str(self.fx.key_pem),
               "--time-scale", str(self.scale), "--latency", str(a.latency), "--bandwidth", str(a.bandwidth)]
        if seed:
            cmd += ["--seed", str(self.work / "seed")]
        out = self.logs / f"emulator-{self.pass_}.stdout"
        err = self.logs / f"emulator-{self.pass_}.stderr"
        t0 = time.monotonic()
        with open(out, "wb") as fo, open(err, "wb") as fe:
            self.emu = subprocess.Popen(cmd, cwd=ROOT, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        while time.monotonic() - t0 < 900:
            text = out.read_text(errors="replace")
            if text.startswith("FICHIER_API_URL="):
                if seed:
                    self.info["seed_s"] = time.monotonic() - t0
                return
            if self.emu.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"emulator did not start: {err.read_text(errors='replace')[-3000:]}")

    def emu_post(self, path: str) -> None:
        r = self.fx._client.post(self.fx._url(path))
        r.raise_for_status()

    def fresh_emulator(self) -> None:
        """Lift any flood lock, forget the limit windows, zero the counters."""
        self.emu_post("/_emulator/unlock")
        self.emu_post("/_emulator/reset")

    def api(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        r = self.fx._client.post(f"https://api.1fichier.com/v1/{endpoint}.cgi", json=body,
                                 headers={"Authorization": f"Bearer {self.fx.api_key}"})
        r.raise_for_status()
        return r.json()

    def find_urls(self) -> None:
        """The 1fichier URL of the big file (for the wire-limit GET), found with paced listings."""
        gap = 3.0 * self.scale * 1.5 + 0.05
        self.fresh_emulator()
        root = self.api("folder/ls", {"folder_id": 0})
        big_id = next(s["id"] for s in root["sub_folders"] if s["name"] == "big")
        time.sleep(gap)
        listing = self.api("folder/ls", {"folder_id": big_id, "files": 1})
        self.urls["big"] = next(i["url"] for i in listing["items"] if i["filename"] == "big.bin")
        time.sleep(gap)

    # -- mounts -------------------------------------------------------------------------------
    def start_mount(self, kind: str, tag: str) -> tuple[subprocess.Popen[bytes], Path, Path, dict[str, Any]]:
        mnt = self.work / "mnt" / tag
        cache = self.work / "cache" / tag
        mnt.mkdir(parents=True)
        cache.mkdir(parents=True)
        log_file = self.logs / f"{tag}.log"
        if kind == "fichierfs":
            cmd = [PY, "-m", "fichierfs", "mount", "-f", "--api-url", "https://api.1fichier.com/v1",
                   "--budget-scale", str(self.budget_scale), "--cache-dir", str(cache),
                   "--log-file", str(log_file), *shlex.split(self.args.fichierfs_args), str(mnt)]
            env = {**os.environ, "FICHIER_API_KEY": self.fx.api_key, "SSL_CERT_FILE": str(self.fx.ca_pem)}
            meta = {"flush": f"fichierfs:{mnt}"}
        else:
            from tests.fidelity.conftest import RCLONE

            cmd = [RCLONE, "mount", "emu:", str(mnt), "--vfs-cache-mode", "writes", "--cache-dir", str(cache),
                   "--ca-cert", str(self.fx.ca_pem), "--rc", "--rc-addr", RC_ADDR, "--rc-no-auth",
                   "-v", "--log-file", str(log_file)]
            env = self.fx.env()
            meta = {"flush": f"rclone:http://{RC_ADDR}"}
        meta["cmd"] = cmd
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=open(self.logs / f"{tag}.stderr", "wb"))  # noqa: SIM115 (child keeps it)
        t0 = time.monotonic()
        while not is_mounted(mnt):
            if proc.poll() is not None or time.monotonic() - t0 > 60:
                stop_proc(proc)
                raise RuntimeError(f"{kind} mount did not come up: "
                                   f"{(self.logs / f'{tag}.stderr').read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)
        meta["mount_s"] = time.monotonic() - t0
        return proc, mnt, cache, meta

    def stop_mount(self, proc: subprocess.Popen[bytes], mnt: Path, cache: Path) -> None:
        try:
            stop_proc(proc, 20)
        finally:
            unmount(mnt)
            stop_proc(proc, 5)
            with contextlib.suppress(OSError):
                mnt.rmdir()
            shutil.rmtree(cache, ignore_errors=True)

    @property
    def budget_scale(self) -> float:
        if self.pass_ == "main" and self.args.budget_scale:
            return self.args.budget_scale
        return round(self.scale * 1.4, 8)

    # -- one timed step -----------------------------------------------------------------------
    def timed(self, cmd: list[str], stdout_path: Path | None = None, cwd: Path | None = None,
              mnt: Path | None = None) -> tuple[str, float, dict[str, Any]]:
        """Run one workload command in its own process group under the time-out."""
        t0 = time.monotonic()
        out_f = open(stdout_path, "wb") if stdout_path else subprocess.PIPE  # noqa: SIM115
        proc = subprocess.Popen(cmd, stdout=out_f, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                cwd=cwd or ROOT, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=self.sz.timeout)
        except subprocess.TimeoutExpired:
            wall = time.monotonic() - t0
            kill_group(proc)
            try:
                proc.communicate(timeout=2)
            except subprocess.TimeoutExpired:
                aborted = mnt is not None and fuse_abort(mnt)
                log(f"workload stuck in the file system after SIGKILL; FUSE connection aborted: {aborted}")
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.communicate(timeout=60)
            return "timed out", wall, {"timeout_s": self.sz.timeout}
        finally:
            if stdout_path:
                out_f.close()  # type: ignore[union-attr]
        wall = time.monotonic() - t0
        extra: dict[str, Any] = {}
        text = (out or b"").decode(errors="replace").strip()
        if text and text.splitlines()[-1].startswith("{"):
            with contextlib.suppress(ValueError):
                extra = json.loads(text.splitlines()[-1])
        if proc.returncode == 3 and "na" in extra:
            return extra["na"], wall, extra
        if proc.returncode != 0:
            extra["rc"] = proc.returncode
            extra["stderr"] = err.decode(errors="replace")[-600:]
            return "failed", wall, extra
        return "ok", wall, extra

    def record(self, mount: str, workload: str, phase: str, run: int, status: str, wall: float | None,
               extra: dict[str, Any], pid: int | None) -> Run:
        s = self.fx.stats()
        calls = {k: v for k, v in s["calls"].items() if v}
        if status == "failed" and s["flood_locks"]:
            status = "failed (flood-locked)"
        if status == "timed out" and s["flood_locks"]:
            status = "timed out (flood-locked)"
        r = Run(mount, workload, phase, run, status, wall, calls, s["flood_locks"], s["bytes_down"], s["bytes_up"],
                vm_hwm_kib(pid) if pid else None, extra, self.pass_)
        self.runs.append(r)
        log(f"{self.pass_[:3]} {workload:8} {phase:4} {mount:9} run {run}: {status} in {wall:.2f}s; "
            f"calls {calls}; locks {r.flood_locks}; down {human_bytes(r.bytes_down)} up {human_bytes(r.bytes_up)}; "
            f"rss {r.rss_kib} KiB")
        return r

    # -- workloads ----------------------------------------------------------------------------
    def phases(self, workload: str, mnt: Path, meta: dict[str, Any], tag: str) -> list[tuple[str, list[str], Path | None, Path | None]]:
        w = self.work
        if workload == "ls":
            cmd = ["ls", "-lR", str(mnt / "tree")]
            return [("cold", cmd, w / f"{tag}.ls-cold", None), ("warm", cmd, w / f"{tag}.ls-warm", None)]
        if workload == "heads":
            cmd = [PY, __file__, "--worker", "heads", str(mnt / "heads"), str(w / "heads.json")]
            return [("cold", cmd, None, None), ("warm", cmd, None, None)]
        if workload == "seqread":
            cmd = [PY, __file__, "--worker", "seqread", str(mnt / "big" / "big.bin"), str(self.info["big_size"]),
                   str(self.info["big_crc"])]
            return [("cold", cmd, None, None)]
        if workload == "randread":
            cmd = ["fio", "--name=randread", f"--filename={mnt / 'big' / 'big.bin'}", "--readonly", "--rw=randread",
                   "--bs=4k", f"--size={self.info['big_size']}", f"--runtime={self.sz.fio_seconds}", "--time_based",
                   "--randseed=1234", "--ioengine=psync", "--numjobs=1", "--invalidate=0", "--output-format=json"]
            return [("cold", cmd, w / f"{tag}.fio.json", None)]
        if workload == "copyin":
            cmd = [PY, __file__, "--worker", "copyin", str(w / "copyin"), str(mnt / f"copyin-{tag}"), meta["flush"]]
            return [("cold", cmd, None, None)]
        if workload == "tar":
            cmd = [PY, __file__, "--worker", "tar", str(w / "source.tar"), str(w / "source.sha256"),
                   str(mnt / f"tar-{tag}"), meta["flush"]]
            return [("cold", cmd, None, None)]
        raise ValueError(workload)

    def check(self, workload: str, phase: str, status: str, out_path: Path | None, extra: dict[str, Any]) -> str:
        """Workload-specific verification of an 'ok' run."""
        if status != "ok":
            return status
        if workload == "ls" and out_path:
            text = out_path.read_text(errors="replace")
            n = sum(1 for line in text.splitlines() if line.startswith("-"))
            extra["files_listed"] = n
            if n != self.info["tree_files"]:
                return "failed"
        if workload == "randread" and out_path:
            try:
                doc = json.loads(out_path.read_text()[out_path.read_text().index("{"):])
                rd = doc["jobs"][0]["read"]
                extra["iops"] = rd["iops"]
                extra["kib_s"] = rd["bw"]
                extra["ios"] = rd["total_ios"]
                pct = rd.get("clat_ns", {}).get("percentile", {})
                extra["p50_ms"] = pct.get("50.000000", 0) / 1e6
                extra["p99_ms"] = pct.get("99.000000", 0) / 1e6
                if doc["jobs"][0].get("error"):
                    return "failed"
            except (ValueError, KeyError, IndexError):
                return "failed"
        if workload == "seqread" and extra.get("mib_s") is None:
            return "failed"
        return status

    def wire(self, run: int) -> None:
        """The same bytes as the sequential read, fetched directly: one token, one ranged GET (curl)."""
        self.fresh_emulator()
        size = self.info["big_size"]
        t0 = time.monotonic()
        try:
            link = self.api("download/get_token", {"url": self.urls["big"], "single": 0})["url"]
            cmd = ["curl", "-sS", "--fail", "--cacert", str(self.fx.ca_pem), "-o", "/dev/null",
                   "-r", f"0-{size - 1}", "-w", "%{size_download}", link]
            status, wall, extra = self.timed(cmd)
            wall = time.monotonic() - t0
        except Exception as exc:  # noqa: BLE001
            status, wall, extra = "failed", time.monotonic() - t0, {"error": repr(exc)}
        if status == "ok":
            extra["mib_s"] = size / MiB / wall
        self.record("wire", "seqread", "cold", run, status, wall, extra, None)

    def run_one(self, kind: str, workload: str, run: int) -> bool:
        """Fresh mount → phases → stop. Returns False when the run did not complete."""
        self.seq += 1
        tag = f"{self.pass_[:3]}-{kind}-{workload}-{run}"
        self.fresh_emulator()
        try:
            proc, mnt, cache, meta = self.start_mount(kind, tag)
        except RuntimeError as exc:
            self.record(kind, workload, "cold", run, "failed", None, {"error": str(exc)[-600:]}, None)
            return False
        all_ok = True
        spy = None
        if self.args.profile and kind == "fichierfs" and shutil.which("py-spy", path=f"{Path(PY).parent}:{os.environ.get('PATH', '')}"):
            self.args.profile.mkdir(parents=True, exist_ok=True)
            spy_bin = shutil.which("py-spy", path=f"{Path(PY).parent}:{os.environ.get('PATH', '')}")
            spy = subprocess.Popen([spy_bin, "record", "--pid", str(proc.pid), "--rate", "100", "--threads",
                                    "--format", "raw", "-o", str(self.args.profile / f"{tag}.txt")],
                                   stdout=subprocess.DEVNULL, stderr=open(self.logs / f"{tag}.py-spy", "wb"))  # noqa: SIM115
            time.sleep(1)
        try:
            self.emu_post("/_emulator/reset")  # count only the workload, not the mount's start-up
            for phase, cmd, out_path, cwd in self.phases(workload, mnt, meta, tag):
                if phase != "cold":
                    self.emu_post("/_emulator/reset")
                status, wall, extra = self.timed(cmd, out_path, cwd, mnt)
                status = self.check(workload, phase, status, out_path, extra)
                extra["mount_s"] = meta["mount_s"]
                r = self.record(kind, workload, phase, run, status, wall, extra, proc.pid)
                if out_path and out_path.exists():
                    out_path.unlink()
                if not r.ok:
                    all_ok = False
                    break  # a warm phase after a failed cold one would only measure the failure again
        finally:
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    spy.wait(30)
                stop_proc(spy)
            self.stop_mount(proc, mnt, cache)
        return all_ok

    def run(self) -> None:
        a = self.args
        t_start = time.monotonic()
        log(f"building inputs ({'quick' if a.quick else 'full'})")
        self.info.update(build_inputs(self.work, self.sz))
        with tarfile.open(self.work / "source.tar") as tar:
            sums = []
            for m in tar.getmembers():
                if m.isfile():
                    sums.append(f"{hashlib.sha256(tar.extractfile(m).read()).hexdigest()}  {m.name}\n")
        (self.work / "source.sha256").write_text("".join(sums))
        self.fx.make_certs()
        mount_fusectl()
        log("starting and seeding the emulator")
        self.start_emulator()
        log(f"emulator up after {self.info['seed_s']:.1f}s")
        self.find_urls()
        self.one_pass(self.sz.runs)
        ref = a.reference_scale if a.reference_scale is not None else (0.0 if a.quick else 0.0002)
        if ref > 0 and "rclone" in a.mounts:
            self.info["reference_scale"] = ref
            self.info["reference_runs"] = a.reference_runs
            self.info["reference_workloads"] = a.reference_workloads
            log(f"reference pass: restarting the emulator on the same data with --time-scale {ref:g}")
            stop_proc(self.emu, 20)
            self.pass_, self.scale = "reference", ref
            self.start_emulator(seed=False)
            self.one_pass(a.reference_runs, [w.strip() for w in a.reference_workloads.split(",") if w.strip()])
        self.info["total_s"] = time.monotonic() - t_start
        self.info["versions"] = self.versions()

    def one_pass(self, runs: int, only: list[str] | None = None) -> None:
        a = self.args
        workloads = [w for w in WORKLOADS if w in a.workloads and (only is None or w in only)]
        mounts = [m for m in MOUNTS if m in a.mounts]
        for workload in workloads:
            given_up: set[str] = set()
            for run in range(1, runs + 1):
                if workload == "seqread":
                    self.wire(run)
                for kind in mounts:
                    if kind in given_up:
                        continue
                    if not self.run_one(kind, workload, run):
                        # a failed, timed-out or n/a run is not repeated (it would only fail again)
                        given_up.add(kind)

    def versions(self) -> dict[str, str]:
        import fichierfs
        from tests.fidelity.conftest import RCLONE

        commit = sh(["git", "-C", str(ROOT), "describe", "--always", "--dirty"]).stdout.strip() or "?"
        cpu = "?"
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        mem = "?"
        with contextlib.suppress(OSError):
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemTotal"):
                    mem = human_bytes(int(line.split()[1]) * KiB)
                    break
        os_name = "?"
        with contextlib.suppress(OSError):
            os_name = re.search(r'PRETTY_NAME="([^"]+)"', Path("/etc/os-release").read_text()).group(1)  # type: ignore[union-attr]
        return {
            "fichierfs": f"{fichierfs.__version__} (git {commit})",
            "rclone": first_line([RCLONE, "version"]),
            "python": platform.python_version(),
            "fio": first_line(["fio", "--version"]),
            "curl": first_line(["curl", "--version"]).split(" (")[0],
            "kernel": platform.release(),
            "os": os_name,
            "cpu": f"{cpu}, {os.cpu_count()} logical CPUs",
            "memory": mem,
            "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        }


# ------------------------------------------------------------------------------------------
# report


PHASE_LABEL = {
    ("ls", "cold"): "`ls -lR` tree, cold",
    ("ls", "warm"): "`ls -lR` tree, warm",
    ("heads", "cold"): "head storm (64 KiB of each file), cold",
    ("heads", "warm"): "head storm, again (warm)",
    ("seqread", "cold"): "sequential read of the big file",
    ("randread", "cold"): "random 4 KiB reads (fio)",
    ("copyin", "cold"): "copy-in small files + big file, until uploaded",
    ("tar", "cold"): "`tar -x` + upload + `sha256sum -c`",
}


def _med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def summarize(runs: list[Run]) -> dict[tuple[str, str, str], dict[str, Any]]:
    groups: dict[tuple[str, str, str], list[Run]] = {}
    for r in runs:
        groups.setdefault((r.workload, r.phase, r.mount), []).append(r)
    out = {}
    for key, rs in groups.items():
        ok = [r for r in rs if r.ok]
        walls = [r.wall for r in ok if r.wall is not None]
        bad = [r for r in rs if not r.ok]
        d: dict[str, Any] = {
            "n": len(rs), "n_ok": len(ok),
            "median": _med(walls), "min": min(walls) if walls else None, "max": max(walls) if walls else None,
            "status": "ok" if not bad else bad[0].status,
            "bad_wall": bad[0].wall if bad else None,
            "flood_locks": max(r.flood_locks for r in rs),
            "bytes_down": _med([r.bytes_down for r in rs]),
            "bytes_up": _med([r.bytes_up for r in rs]),
            "rss_kib": max((r.rss_kib for r in rs if r.rss_kib), default=None),
            "api_calls": _med([sum(v for k, v in r.calls.items() if k not in ("download", "upload.cgi", "end.pl"))
                               for r in rs]),
        }
        eps = sorted({k for r in rs for k in r.calls})
        d["calls"] = {k: _med([r.calls.get(k, 0) for r in rs]) for k in eps}
        for k in ("mib_s", "iops", "p50_ms", "p99_ms", "cp_s", "flush_s", "tar_s", "check_s"):
            vals = [r.extra[k] for r in ok if isinstance(r.extra.get(k), (int, float))]
            if vals:
                d[k] = _med(vals)
        out[key] = d
    return out


def _fmt_time(d: dict[str, Any] | None) -> str:
    if d is None:
        return "–"
    if d["median"] is None:
        extra = f" after {d['bad_wall']:.1f} s" if d.get("bad_wall") is not None else ""
        return f"**{d['status']}**{extra}"
    spread = f" ({d['min']:.2f}–{d['max']:.2f})" if d["n_ok"] > 1 else ""
    s = f"{d['median']:.2f} s{spread}"
    if d["n_ok"] < d["n"]:
        s += f", {d['n'] - d['n_ok']}/{d['n']} {d['status']}"
    return s


def _fmt_calls(d: dict[str, Any] | None) -> str:
    if d is None:
        return "–"
    parts = [f"{k} {v:g}" for k, v in d["calls"].items() if v]
    return ", ".join(parts) or "none"


def render(bench_info: dict[str, Any], runs: list[Run], args: argparse.Namespace, cmdline: str,
           sz: Sizes, budget_scale: float) -> tuple[str, list[str]]:
    v = bench_info.get("versions", {})
    lines: list[str] = []
    findings: list[str] = []
    add = lines.append
    add("# Benchmarks: fichierfs vs `rclone mount`")
    add("")
    add("Generated by `scripts/bench` — do not edit by hand; regenerate with the command line below on a quiet "
        "machine. Every number comes from this run.")
    add("")
    add("```")
    add(cmdline)
    add("```")
    add("")
    add(f"*{datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}; "
        f"{'QUICK smoke-test sizes — not a benchmark' if args.quick else 'full sizes'}; "
        f"total {bench_info.get('total_s', 0) / 60:.1f} min; load average at the end {v.get('loadavg', '?')}.*")
    add("")
    add("## Set-up")
    add("")
    add(f"- **Machine**: {v.get('cpu', '?')}, {v.get('memory', '?')} RAM, {v.get('os', '?')}, "
        f"Linux {v.get('kernel', '?')}.")
    add(f"- **Versions**: fichierfs {v.get('fichierfs', '?')}; {v.get('rclone', '?')} (Debian package, fichier "
        f"backend unmodified); Python {v.get('python', '?')}; {v.get('fio', '?')}; {v.get('curl', '?')}.")
    add(f"- **Emulator**: one `fichierfs emulator` on 127.0.0.1:443 (TLS, throwaway CA), documented limits **ON** "
        f"(3 req/s, 1 listing / 3 s overall, same folder 1 / 30 s, `user/info` 1 / 5 min, 60 s flood lock "
        f"extended by every call made during it), all limit windows × `--time-scale {args.time_scale:g}`; "
        f"`--latency {args.latency:g}` s added to every request; `--bandwidth {human_bytes(args.bandwidth)}/s` "
        f"per response stream. Counters and locks are reset before every run and between cold and warm "
        f"(`/_emulator/reset`, `/_emulator/unlock`).")
    extra_args = (" " + args.fichierfs_args) if getattr(args, "fichierfs_args", "") else ""
    add(f"- **fichierfs**: `fichierfs mount -f --budget-scale {budget_scale:g}{extra_args}` (defaults otherwise; fresh "
        f"`--cache-dir` per mount). `--budget-scale` multiplies its pacing by the same factor as the emulator's "
        f"windows, with a 1.4× margin, as its mount tests do.")
    add("- **rclone**: `rclone mount emu: MNT --vfs-cache-mode writes` (defaults otherwise; fresh `--cache-dir` per "
        "mount; `--rc` only to read the upload queue with `vfs/stats`; `-v --log-file` for the logs). rclone "
        "cannot be scaled: its fixed 400 ms pacer and its two listings per folder (`file/ls` then `folder/ls`, "
        "≈ 0.4 s apart) meet the scaled limits as they are. With any time scale above ≈ 0.013 the "
        "\"same folder once per 30 s\" rule is still broken by those two listings, exactly as against the real "
        "service (scale 1), so rclone's behaviour here is its real behaviour; only the lengths of the windows "
        "and of the lock are shorter.")
    add("- Everything runs in a private mount + network namespace (`unshare -m -n`) whose `/etc/hosts` maps "
        "`api.1fichier.com` & co. to 127.0.0.1 (the arrangement of `tests/fidelity`). Traffic never leaves "
        "the loopback of that namespace.")
    add(f"- Each workload × mount runs {sz.runs} time(s) on a **fresh mount** (cold; warm = the same workload "
        f"again on the same mount). A run that fails, times out (limit {sz.timeout:g} s) or is not applicable is "
        f"neither repeated nor followed by its warm phase. Time = median (min–max over successful runs).")
    info = bench_info
    add(f"- **Data**: tree = {info.get('tree_dirs')} folders × {sz.tree_files} files (200 B–4 KB); head storm = "
        f"{sz.heads_files} files of {human_bytes(sz.heads_size[0])}–{human_bytes(sz.heads_size[1])}, first 64 KiB "
        f"of each; big file = {human_bytes(info.get('big_size'))} (random bytes, CRC checked on read); fio = "
        f"`randread`, 4 KiB, psync, 1 job, seed 1234, {sz.fio_seconds} s; copy-in = {info.get('copy_small')} real "
        f"files from /usr/share (1 B–64 KiB, 10 folders) + one {human_bytes(sz.copy_big)} file, "
        f"{human_bytes(info.get('copy_bytes'))} in all; tarball = {info.get('tar_files')} real source files "
        f"({info.get('tar_source')}), {human_bytes(info.get('tar_bytes'))}. Seeding took "
        f"{info.get('seed_s', 0):.0f} s.")
    main = [r for r in runs if r.pass_ == "main"]
    ref = [r for r in runs if r.pass_ == "reference"]
    add("")
    add(f"## Results (limits on, time scale {args.time_scale:g})")
    add("")
    lines.extend(section(main, findings, "main"))
    if ref:
        rs = bench_info.get("reference_scale")
        add("")
        add(f"## Reference: the same workloads where rclone's pacing passes (time scale {rs:g})")
        add("")
        add(f"rclone never completes a workload under the limits above, so this second pass measures speed "
            f"alone: the emulator is restarted on the same data with every limit window × {rs:g} (the scale "
            f"of `tests/fidelity`, where rclone's 400 ms pacer and its back-to-back listings pass: a 30 s window "
            f"becomes {30 * rs * 1000:g} ms), same latency and bandwidth; fichierfs gets "
            f"`--budget-scale {round(rs * 1.4, 8):g}`. {bench_info.get('reference_runs', 1)} run(s) per workload; "
            f"workloads: {bench_info.get('reference_workloads')}. "
            f"It answers \"which is faster when the API does not punish\", not \"which survives 1fichier\".")
        add("")
        lines.extend(section(ref, findings, "reference"))
    add("")
    add("## Findings (computed from the tables above)")
    add("")
    summ = summarize(main)
    keys = [k for k in PHASE_LABEL if any((k[0], k[1], m) in summ for m in (*MOUNTS, "wire"))]
    rl = [k for k in keys if (summ.get((k[0], k[1], "rclone")) or {}).get("flood_locks")]
    rdone = [k for k in keys if (summ.get((k[0], k[1], "rclone")) or {}).get("median") is not None]
    if rl:
        add(f"- Under the limits, rclone was flood-locked in {len(rl)} of {len(keys)} workload phases "
            f"and completed {len(rdone)}.")
    f_locks = sum(r.flood_locks for r in runs if r.mount == "fichierfs")
    add(f"- fichierfs flood locks over the whole run (both passes): {f_locks}.")
    for line in findings:
        add(f"- {line}")
    if not findings:
        add("- fichierfs lost to rclone on no workload both completed, and met 0.9 × the wire limit.")
    return "\n".join(lines) + "\n", findings


def section(runs: list[Run], findings: list[str], name: str) -> list[str]:
    """The tables of one pass; appends computed findings (tagged with the pass) to ``findings``."""
    summ = summarize(runs)
    keys = [k for k in PHASE_LABEL if any((k[0], k[1], m) in summ for m in (*MOUNTS, "wire"))]
    lines: list[str] = []
    add = lines.append
    tag = "" if name == "main" else f" [{name} pass]"
    add("| workload | fichierfs | rclone | fichierfs / rclone | flood locks (f / r) | API calls f / r | "
        "downloaded f / r | uploaded f / r | peak RSS f / r |")
    add("|---|---|---|---|---|---|---|---|---|")
    for key in keys:
        f = summ.get((key[0], key[1], "fichierfs"))
        r = summ.get((key[0], key[1], "rclone"))
        ratio = "–"
        if f and r and f["median"] is not None and r["median"] is not None and r["median"] > 0:
            ratio = f"{f['median'] / r['median']:.2f}"
            if key[0] == "randread" and f.get("iops") and r.get("iops"):
                ratio = f"{f['iops'] / r['iops']:.2f}× rclone's IOPS"
        elif f and f["median"] is not None and r and r["median"] is None:
            ratio = "rclone did not finish"

        def pair(field_: str, fmt: Any, f: dict[str, Any] | None = f, r: dict[str, Any] | None = r) -> str:
            return f"{fmt(f[field_]) if f and f.get(field_) is not None else '–'} / " \
                   f"{fmt(r[field_]) if r and r.get(field_) is not None else '–'}"

        label = PHASE_LABEL[key]
        tf, tr = _fmt_time(f), _fmt_time(r)
        if key[0] == "seqread":
            tf += f" ({f['mib_s']:.1f} MiB/s)" if f and f.get("mib_s") else ""
            tr += f" ({r['mib_s']:.1f} MiB/s)" if r and r.get("mib_s") else ""
        if key[0] == "randread":
            tf += f" — {f['iops']:.0f} IOPS, p50 {f['p50_ms']:.2f} ms, p99 {f['p99_ms']:.1f} ms" if f and f.get("iops") else ""
            tr += f" — {r['iops']:.0f} IOPS, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.1f} ms" if r and r.get("iops") else ""
        add(f"| {label} | {tf} | {tr} | {ratio} | {pair('flood_locks', str)} | "
            f"{pair('api_calls', lambda x: f'{x:g}')} | {pair('bytes_down', human_bytes)} | "
            f"{pair('bytes_up', human_bytes)} | {pair('rss_kib', lambda x: human_bytes(x * KiB))} |")
    wire = summ.get(("seqread", "cold", "wire"))
    if wire:
        f = summ.get(("seqread", "cold", "fichierfs"))
        r = summ.get(("seqread", "cold", "rclone"))
        add("")
        add(f"Sequential read against the wire limit{tag}: the same bytes fetched directly from the emulator in "
            "the same run, one `download/get_token` then one ranged GET with curl (one connection, so one "
            "bandwidth cap).")
        add("")
        add("| | time | MiB/s | / wire limit |")
        add("|---|---|---|---|")
        wm = wire.get("mib_s")
        add(f"| wire limit (curl) | {_fmt_time(wire)} | {wm:.1f} | 1.00 |" if wm else f"| wire limit | {_fmt_time(wire)} | – | – |")
        for mname, d in (("fichierfs", f), ("rclone", r)):
            if d:
                mib = d.get("mib_s")
                rel = f"{mib / wm:.2f}" if mib and wm else "–"
                add(f"| {mname} | {_fmt_time(d)} | {f'{mib:.1f}' if mib else '–'} | {rel} |")
                if mname == "fichierfs" and mib and wm and mib < 0.9 * wm:
                    findings.append(f"fichierfs reads the big file sequentially at {mib:.1f} MiB/s, "
                                    f"{mib / wm:.2f} × the wire limit ({wm:.1f} MiB/s): below the 0.9 × "
                                    f"target{tag}.")
    wr = [(k, m) for k in (("copyin", "cold"), ("tar", "cold")) for m in MOUNTS if (k[0], k[1], m) in summ]
    if any(summ[(k[0], k[1], m)].get("cp_s") or summ[(k[0], k[1], m)].get("tar_s") for k, m in wr):
        add("")
        add(f"Write workloads, split{tag}:")
        add("")
        add("| workload | mount | `cp`/`tar` returns | until uploaded | `sha256sum -c` read-back |")
        add("|---|---|---|---|---|")
        for k, m in wr:
            d = summ[(k[0], k[1], m)]
            first = d.get("cp_s", d.get("tar_s"))
            if first is None:
                continue
            check = f"{d['check_s']:.2f} s" if d.get("check_s") is not None else "–"
            add(f"| {k[0]} | {m} | {first:.2f} s | {d.get('flush_s', 0):.2f} s | {check} |")
    add("")
    add(f"API calls per endpoint, median per run{tag}:")
    add("")
    add("| workload | fichierfs | rclone |")
    add("|---|---|---|")
    for key in keys:
        add(f"| {PHASE_LABEL[key]} | {_fmt_calls(summ.get((key[0], key[1], 'fichierfs')))} | "
            f"{_fmt_calls(summ.get((key[0], key[1], 'rclone')))} |")
    for key in keys:
        f = summ.get((key[0], key[1], "fichierfs"))
        r = summ.get((key[0], key[1], "rclone"))
        if not f:
            continue
        if f["median"] is None and not f["status"].startswith("n/a"):
            findings.append(f"fichierfs did not complete “{PHASE_LABEL[key]}”: {f['status']}{tag}.")
        if f["flood_locks"]:
            findings.append(f"fichierfs earned {f['flood_locks']} flood lock(s) in “{PHASE_LABEL[key]}”{tag}.")
        if r and f["median"] is not None and r["median"] is not None:
            if key[0] == "randread":
                if f.get("iops") and r.get("iops") and f["iops"] < r["iops"]:
                    findings.append(f"fichierfs loses to rclone on “{PHASE_LABEL[key]}”: "
                                    f"{f['iops']:.0f} vs {r['iops']:.0f} IOPS{tag}.")
            elif f["median"] > r["median"]:
                findings.append(f"fichierfs loses to rclone on “{PHASE_LABEL[key]}”: {f['median']:.2f} s vs "
                                f"{r['median']:.2f} s ({f['median'] / r['median']:.2f} ×){tag}.")
    return lines


def chart(runs: list[Run], path: Path, titles: dict[str, str]) -> None:
    """Horizontal bars of the median wall time (log scale), one panel per pass; hatched = did not complete."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    passes = [p for p in ("main", "reference") if any(r.pass_ == p for r in runs)]
    summs = {p: summarize([r for r in runs if r.pass_ == p]) for p in passes}
    nbars = {p: sum(1 for k in summs[p] if k[2] in (*MOUNTS, "wire")) for p in passes}
    fig, axes = plt.subplots(len(passes), 1, figsize=(11, sum(0.32 * n + 1.4 for n in nbars.values())),
                             gridspec_kw={"height_ratios": [nbars[p] + 2 for p in passes]}, squeeze=False)
    colors = {"fichierfs": "#2b7bba", "rclone": "#d9832b", "wire": "#777777"}
    for ax, p in zip(axes[:, 0], passes):
        summ = summs[p]
        keys = [k for k in PHASE_LABEL if any((k[0], k[1], m) in summ for m in MOUNTS)]
        y = 0.0
        yt, yl = [], []
        xmax = max([d["median"] or d.get("bad_wall") or 0 for d in summ.values()] + [1])
        for key in keys:
            for m in (*MOUNTS, "wire"):
                d = summ.get((key[0], key[1], m))
                if d is None:
                    continue
                if d["median"] is not None:
                    lo, hi = d["median"] - d["min"], d["max"] - d["median"]
                    ax.barh(y, d["median"], color=colors[m], xerr=[[lo], [hi]] if d["n_ok"] > 1 else None,
                            capsize=3, label=m)
                    ax.text(d["max"] * 1.08, y, f"{d['median']:.2f} s", va="center", fontsize=7)
                else:
                    w = d.get("bad_wall") or xmax
                    ax.barh(y, w, color="white", edgecolor=colors[m], hatch="//", label=m)
                    ax.text(w * 1.05, y, d["status"], va="center", fontsize=7, color="#a00")
                yt.append(y)
                yl.append(f"{PHASE_LABEL[key].replace('`', '')} — {m}")
                y += 1
            y += 0.5
        ax.set_yticks(yt, yl, fontsize=7)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlim(right=xmax * 8)
        ax.set_xlabel("wall time, seconds (log scale; hatched = did not complete)", fontsize=8)
        ax.set_title(titles[p], fontsize=9)
        handles, labels = ax.get_legend_handles_labels()
        uniq = dict(zip(labels, handles))
        ax.legend(uniq.values(), uniq.keys(), loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(out: Path, bench_info: dict[str, Any], runs: list[Run], args: argparse.Namespace,
                  cmdline: str, sz: Sizes, budget_scale: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    md, _findings = render(bench_info, runs, args, cmdline, sz, budget_scale)
    md += ("\n![fichierfs vs rclone: wall time per workload](bench-chart.png)\n\n"
           "Raw per-run numbers (calls per endpoint, bytes, RSS, fio details): `scripts/bench --raw` writes "
           "`bench-results.json`.\n")
    md += ANALYSIS
    (out / "BENCHMARKS.md").write_text(md)
    raw = json.dumps({"info": bench_info, "args": {k: v for k, v in vars(args).items()}, "cmdline": cmdline,
                      "sizes": sz.__dict__, "budget_scale": budget_scale, "runs": [r.__dict__ for r in runs]},
                     indent=1, default=str)
    if args.raw:
        (out / "bench-results.json").write_text(raw)
    if args.inner is not None:
        (args.inner / "logs" / "bench-results.json").write_text(raw)
    common = f"{args.latency * 1000:g} ms latency, {human_bytes(args.bandwidth)}/s per stream"
    chart(runs, out / "bench-chart.png", {
        "main": f"fichierfs vs rclone mount, 1fichier emulator, limits ON (time scale {args.time_scale:g}), {common}",
        "reference": f"reference: limits × {bench_info.get('reference_scale', 0):g} (rclone's pacing passes), {common}",
    })
    log(f"wrote {out / 'BENCHMARKS.md'} and {out / 'bench-chart.png'}")


#: Hand-written analysis appended to BENCHMARKS.md (keep it true to the measurements).
ANALYSIS = """
## Why the numbers are what they are

These explanations come from the counters in the tables (API calls, bytes, RSS), from py-spy
profiles of the fichierfs mount (`scripts/bench --profile DIR` records one per mount, as collapsed
stacks) and from experiments with `--fichierfs-args`. They describe mechanisms, so they hold on any
machine; the figures quoted here are from the development run (2 vCPUs shared with other jobs,
load average ≈ 4–6) and only indicate magnitudes.

- **rclone and the flood lock.** rclone 1.60 lists a folder with `file/ls` then `folder/ls` of the
  same folder about 0.4 s apart. The API allows one listing of a folder per 30 s (3 s at time scale
  0.1), so the second call earns a flood lock on the very first folder rclone looks at (the root,
  to resolve the first path component). Its pacer retries every ≤ 5 s, ten low-level retries, each
  one extending the lock; the system call fails with EIO after ≈ 41 s, and the next one starts over.
  No workload gets past its first lookup. Against the real service (scale 1) the windows are ten
  times longer, so the outcome is the same, only slower.
- **Cold `ls -lR` is bound by the listing budget, not by fichierfs.** One `folder/ls` (with
  `files:1`) per folder, one every `listing_interval` = 3.5 s × budget scale: 51 listings × 0.49 s
  ≈ 25 s here, ≈ 3 min at real scale. That is the price of never being locked. In the reference pass
  (no effective limits) the same 51 calls take ≈ 3 s, rclone's 104 calls ≈ 41 s (its 400 ms pacer).
- **Warm `ls -lR`: fichierfs loses (≈ 1.5 s vs ≈ 0.4 s).** No API call on either side; it is
  per-request cost in the kernel ↔ daemon loop. `ls -l` asks, for each of the 5 000 entries, a
  lookup/getattr plus two extended attributes (`getxattr` + `lgetxattr`, checked with `strace -c`).
  rclone's mount does not implement xattrs, so after its first ENOSYS the kernel stops asking;
  fichierfs serves `user.fichier.*` xattrs and must answer every one of those calls with ENODATA
  through pyfuse3 and Python (`Operations.getxattr`, an `FsError` raised and translated each
  time). **Possible fix** (ops.py/vfs.py): answer `security.*` and `system.*` names before any
  other work and without an exception; and consider longer `entry_timeout`/`attr_timeout` for
  folders listed less than `dir_ttl` ago (the listing is the truth anyway). Neither removes the
  round trips; the remaining gap is Python vs Go per request.
- **Head storm: what a first read fetches.** Before commit c3bac7d the reader's first GET covered
  `initial_window` (1 MiB + 128 KiB rounded down to whole 256 KiB chunks = 1 MiB): the development
  run measured 200 MiB downloaded for 12.5 MiB used (16×), ≈ 22 s, and peak RSS ≈ 240 MiB from
  bytes nobody read. c3bac7d made the first window 256 KiB; re-measured on the same machine right
  after (`--workloads heads --mounts fichierfs`): 50 MiB, 16.0 s, peak RSS 93 MiB. The storm takes
  as long with or without effective limits (reference pass), so pacing is not the cost: per file it
  is one `download/get_token` round trip (the API's rule: a link per file) plus one GET. rclone
  downloads ≈ 0.45 MiB per head (it stops streaming on close) but is ≈ 8× slower: a
  `download/get_token` through its 400 ms pacer on every open, warm or cold (no read cache with
  `--vfs-cache-mode writes`).
- **Sequential read ≥ the wire limit.** fichierfs fetches with parallel ranged GETs on one link
  (windows doubling up to `readahead_max` = 32 MiB: 37 GETs for 1 GiB), so under a per-connection
  cap it matches or beats one curl connection. On 2 cores the emulator's own TLS streaming (Python)
  is the actual ceiling (≈ 15–20 MiB/s against a 32 MiB/s cap). py-spy of a 256 MiB read: the mount
  used ≈ 63 % of one core at 17.5 MiB/s; 38 % of its samples in httpx/httpcore/ssl receive, 8 % in
  `FichierClient.download_range` growing a `bytearray` piece by piece, FUSE `read` handling ≈ 7 %.
  **Recommended fix** (api.py): pre-size the buffer (`bytearray(want)` and `memoryview` slice
  assignment) to drop the reallocations and copies — worth it on a faster line, where the mount
  becomes CPU-bound at roughly 25–30 MiB/s per core.
- **Memory.** A one-pass sequential read fills the whole `memory_budget` (256 MiB; peak RSS
  ≈ 330–360 MiB) although every chunk is read once: consumed chunks are evicted first, but only
  under pressure. rclone streams through a bounded buffer (peak RSS ≈ 70 MiB). **Recommended fix**
  (chunks.py/reader.py): drop a sequential stream's chunks once consumed (or cap what one stream
  keeps to about two windows), so that RSS follows the read-ahead and not the budget.
- **Random 4 KiB reads.** Each miss fetches one 256 KiB chunk (`chunk_size`, ≈ 64× read
  amplification) and waits one request latency plus the chunk at the per-connection rate: ≈ 21 IOPS,
  p50 ≈ 47 ms at 20 ms latency. With `--fichierfs-args "--chunk-size 64K"` (same run conditions):
  26 IOPS, p50 38 ms, 50 MiB downloaded instead of 149 MiB. **Possible fix**: a smaller fetch unit
  for reads the detector classifies as random, keeping 256 KiB for sequential streams. rclone
  re-opens its stream with a new `download/get_token` (400 ms pacer) on every seek: ≈ 1 IOPS,
  p50 ≈ 800 ms.
- **Copy-in and `tar -x`: one `get_upload_server` per file.** 1 000 small files cost 1 001
  `upload/get_upload_server` + 1 001 `upload.cgi` + 1 001 `end.pl`; the metered
  `get_upload_server` calls alone take 1 001 × `min_interval` (0.5 s × 0.14) ≈ 70 s of the ≈ 88 s,
  and would take ≈ 8 min at real scale. The API takes up to 500 files in one upload POST (one node,
  one `end.pl` report, 1fichier-api.md §6, "Batch where the API allows it"). **Recommended fix**
  (writer.py): upload the small files that are due in the same folder together (up to 500 per
  POST) — 1 000 files would need ≈ 2–10 metered calls instead of 1 001. `cp` itself returned after
  ≈ 20 s for 261 MiB (staging into the cache directory, ≈ 13 MiB/s through FUSE writes; not profiled
  yet). rclone's copy-in is not in the reference pass by default: it pays a `file/ls` of the
  destination plus `get_upload_server` per file through its 400 ms pacer (run it with
  `--reference-workloads copyin,tar`, expect tens of minutes).
"""


# ------------------------------------------------------------------------------------------
# entry points


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/bench", description="fichierfs vs rclone mount on the 1fichier emulator")
    p.add_argument("--quick", action="store_true", help="tiny sizes, one run each (smoke test, < 2 min)")
    p.add_argument("--output", type=Path, default=ROOT, help="where BENCHMARKS.md, bench-chart.png and "
                   "bench-results.json go (default: the repository root)")
    p.add_argument("--time-scale", type=float, default=0.1, help="emulator limit windows × this (default 0.1)")
    p.add_argument("--budget-scale", type=float, default=None, help="fichierfs --budget-scale (default 1.4 × time scale)")
    p.add_argument("--latency", type=float, default=0.02, help="seconds added to every request (default 0.02)")
    p.add_argument("--bandwidth", type=int, default=32 * MiB,
                   help="bytes/s per download stream (default 32 MiB/s)")
    p.add_argument("--runs", type=int, default=None, help="runs per workload and mount (default 3, quick 1)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per workload phase (default 600, quick 8)")
    p.add_argument("--fichierfs-args", default="", help="extra options for fichierfs mount (experiments; "
                   "the report shows them in the command line)")
    p.add_argument("--big-size", default=None, help="size of the big file (default 1G, quick 24M)")
    p.add_argument("--workloads", default=",".join(WORKLOADS), help=f"subset of {','.join(WORKLOADS)}")
    p.add_argument("--mounts", default=",".join(MOUNTS), help="subset of fichierfs,rclone")
    p.add_argument("--reference-scale", type=float, default=None,
                   help="then rerun everything with the emulator at this time scale, where rclone's pacing passes "
                   "(default 0.0002; 0 = skip; quick: skip)")
    p.add_argument("--reference-runs", type=int, default=1, help="runs per workload in the reference pass (default 1)")
    p.add_argument("--reference-workloads", default="ls,heads,seqread,randread",
                   help="workloads of the reference pass (default: the read workloads; rclone needs ~1 s of "
                   "paced calls per uploaded file, so its write workloads take tens of minutes)")
    p.add_argument("--profile", type=Path, default=None,
                   help="record a py-spy profile (collapsed stacks) of every fichierfs mount into this directory")
    p.add_argument("--raw", action="store_true", help="also write bench-results.json (every run, every counter)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs) and print its path")
    p.add_argument("--render-from", type=Path, default=None, metavar="JSON",
                   help="only regenerate the report from a bench-results.json (no measurement)")
    p.add_argument("--inner", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--cmdline", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    a.workloads = [w.strip() for w in a.workloads.split(",") if w.strip()]
    a.mounts = [m.strip() for m in a.mounts.split(",") if m.strip()]
    bad = [w for w in a.workloads if w not in WORKLOADS] + [m for m in a.mounts if m not in MOUNTS]
    if bad:
        p.error(f"unknown workload/mount: {bad}")
    return a


def preflight() -> str | None:
    from tests.fidelity.conftest import RCLONE

    if os.geteuid() != 0:
        return "needs root (FUSE mounts, a private mount + network namespace)"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    for tool in ("fusermount3", "unshare", "mount", "ip", "curl", "fio", "tar", "sha256sum"):
        if shutil.which(tool) is None:
            return f"{tool} is missing"
    if not (RCLONE and os.access(RCLONE, os.X_OK)):
        return "rclone is not installed (Debian's /usr/bin/rclone)"
    return None


def outer(args: argparse.Namespace, argv: list[str]) -> int:
    """Prepare the work dir and the hosts file, then re-run inside a private mount + net namespace."""
    from tests.fidelity.conftest import NS_SCRIPT, Fidelity

    reason = preflight()
    if reason:
        print(f"bench: cannot run: {reason}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="fichierfs-bench-"))
    inner: subprocess.Popen[bytes] | None = None
    try:
        fx = Fidelity(work, work / "logs")
        fx.make_files()  # hosts file, empty rclone config, HOME, emulator state dir
        (work / "api-key").write_text(fx.api_key)
        os.chmod(work / "api-key", 0o600)
        cmdline = "scripts/bench " + shlex.join(argv)
        cmd = ["unshare", "-m", "-n", "sh", "-c", "ip link set lo up && " + NS_SCRIPT, str(fx.hosts),
               PY, str(Path(__file__).resolve()), *argv, "--inner", str(work), "--cmdline", cmdline]
        inner = subprocess.Popen(cmd, cwd=ROOT)
        try:
            return inner.wait()
        except KeyboardInterrupt:
            inner.send_signal(signal.SIGINT)
            return inner.wait(60)
    finally:
        stop_proc(inner, 60)
        if args.keep:
            print(f"bench: work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def inner_main(args: argparse.Namespace) -> int:
    work = args.inner
    bench = Bench(args, work)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    rc = 0
    try:
        bench.run()
    except KeyboardInterrupt:
        log("interrupted: writing what was measured")
        rc = 130
    except Exception as exc:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        log(f"aborted: {exc!r}")
        rc = 1
    finally:
        for mnt in sorted((work / "mnt").glob("*")) if (work / "mnt").exists() else []:
            unmount(mnt)
        stop_proc(bench.emu, 20)
        if bench.fx._client is not None:
            bench.fx._client.close()
    if bench.runs:
        if "versions" not in bench.info:
            bench.info["versions"] = bench.versions()
        write_outputs(args.output, bench.info, bench.runs, args, args.cmdline or "scripts/bench", bench.sz,
                      bench.budget_scale)
    return rc


def render_from(raw: Path, out: Path) -> int:
    """Regenerate BENCHMARKS.md and the chart from a bench-results.json (after editing the report code)."""
    doc = json.loads(raw.read_text())
    a = doc["args"]
    args = argparse.Namespace(**{**a, "output": out, "inner": None, "raw": False,
                                 "profile": None, "render_from": None})
    sizes = doc["sizes"]
    sz = Sizes(**{k: tuple(v) if isinstance(v, list) else v for k, v in sizes.items()})
    runs = [Run(**r) for r in doc["runs"]]
    write_outputs(out, doc["info"], runs, args, doc["cmdline"], sz, doc["budget_scale"])
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return worker(argv[1], argv[2:])
    args = parse_args(argv)
    if args.render_from is not None:
        return render_from(args.render_from, args.output)
    if args.inner is not None:
        return inner_main(args)
    return outer(args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
