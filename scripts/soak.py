"""Fault soak: real programs on a mount while the emulator injects faults, the mount is SIGKILLed and
remounted, and the emulator is restarted on its state. At the end the remote tree (read straight from the
emulator's state directory) must equal a reference model: 0 lost, 0 duplicated, 0 wrong contents, and no
flood lock beyond those injected; every read must match the model, and no program may be refused while no
kill happened during it (EAGAIN aside: the mount's answer while the API is flood-locked).

Usage: scripts/soak [--minutes N | --seconds N] [--seed S] [--json FILE] [--keep]

The workload (one program at a time, in ``MNT/soak``): ``cp -r`` and ``rsync -r`` of small local trees,
appends (``>>``), overwrites (``cp``), renames and moves (``mv``), deletes (``rm``), ``mkdir``/``rmdir`` and
reads (``cat``, checked against the model at once). Around it:

* faults (``/_emulator/fault``, see fichierfs/emulator/faults.py): 5xx pages, HTML pages where JSON was
  expected (on end.pl that is the antivirus "Veuillez patienter / Please wait" page, §6), truncated bodies
  (the request WAS processed), connection resets, flood locks, end.pl without links (§6);
* ``kill -9`` of the mount process, either between two programs (uploads and deletes still in flight) or
  while one runs (its outcome is then whatever the remounted file system shows: an interrupted ``cp`` may
  leave fewer files, never a duplicate), then ``fusermount3 -u -z`` and a remount;
* a restart of the emulator on the same state directory and port (its upload sessions, limits and pending
  faults are lost, the account is not).

Time is scaled as in the mount tier (emulator ``--time-scale 0.05``, mount ``--budget-scale 0.07``), so every
rate limit is still enforced.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
EMU_SCALE = 0.05
MOUNT_SCALE = 0.07
KEY = "emu-soak-key-7d41e0"

FAULTS: list[tuple[str, str]] = [
    ("folder/ls", "5xx"), ("folder/ls", "html"), ("folder/ls", "reset"), ("folder/ls", "truncate"),
    ("upload/get_upload_server", "5xx"), ("upload/get_upload_server", "reset"), ("upload/get_upload_server", "html"),
    ("upload.cgi", "5xx"), ("upload.cgi", "reset"), ("upload.cgi", "truncate"),
    ("end.pl", "no_links"), ("end.pl", "html"), ("end.pl", "truncate"), ("end.pl", "5xx"),
    ("download/get_token", "5xx"), ("download/get_token", "reset"), ("download", "truncate"), ("download", "5xx"),
    ("file/rm", "5xx"), ("file/rm", "truncate"), ("file/rm", "reset"),
    ("file/mv", "truncate"), ("file/mv", "5xx"), ("file/rename", "truncate"), ("file/rename", "reset"),
    ("folder/mkdir", "truncate"), ("folder/mkdir", "5xx"), ("folder/rm", "truncate"), ("folder/rm", "5xx"),
    ("folder/ls", "flood"), ("upload/get_upload_server", "flood"), ("download/get_token", "flood"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _mounted(path: Path) -> bool:
    target = str(path.resolve())
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == target for line in f if len(line.split()) > 1)


def _read(path: Path, *, patient: bool = False) -> bytes:
    """A whole file; EAGAIN (the mount's answer while the API is flood-locked) is an OSError,
    retried for up to a minute when ``patient``."""
    deadline = time.monotonic() + (60 if patient else 0)
    while True:
        with open(path, "rb", buffering=0) as f:
            chunks: list[bytes] = []
            while True:
                try:
                    b = f.read(1 << 20)
                except BlockingIOError:
                    b = None
                if b is None:
                    break
                if not b:
                    return b"".join(chunks)
                chunks.append(b)
        if time.monotonic() > deadline:
            raise OSError(11, f"{path}: EAGAIN (the API is busy)")
        time.sleep(1)


@dataclass
class Figures:
    ops: dict[str, int] = field(default_factory=dict)
    op_failures: list[str] = field(default_factory=list)
    read_mismatches: list[str] = field(default_factory=list)
    view_errors: list[str] = field(default_factory=list)
    """Programs that failed with no kill during them (EAGAIN aside, the mount's answer while the
    API is flood-locked): the mount disagreed with the model (a file or folder it should show)."""
    faults_injected: dict[str, int] = field(default_factory=dict)
    floods_injected: int = 0
    kills_between: int = 0
    kills_during: int = 0
    emulator_restarts: int = 0
    flood_locks: int = 0
    calls: dict[str, int] = field(default_factory=dict)
    remounts: int = 0
    remount_seconds: list[float] = field(default_factory=list)
    sync_seconds: float = 0.0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    wrong_content: list[str] = field(default_factory=list)
    missing_dirs: list[str] = field(default_factory=list)
    extra_dirs: list[str] = field(default_factory=list)
    undrained: bool = False
    crashes: list[str] = field(default_factory=list)
    files_in_model: int = 0
    dirs_in_model: int = 0
    seconds: float = 0.0

    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.extra or self.wrong_content or self.missing_dirs
                    or self.extra_dirs or self.read_mismatches or self.view_errors or self.undrained
                    or self.crashes) \
            and self.flood_locks <= self.floods_injected


class Soak:
    def __init__(self, work: Path, rng: random.Random, log: Any = sys.stderr) -> None:
        self.work, self.rng, self.out = work, rng, log
        self.state = work / "state"
        self.mnt = work / "mnt"
        self.cache = work / "cache"
        self.src = work / "src"
        for d in (self.state, self.mnt, self.cache, self.src):
            d.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.emu: subprocess.Popen[bytes] | None = None
        self.mount_proc: subprocess.Popen[bytes] | None = None
        self.fig = Figures()
        self.files: dict[str, bytes] = {}  # model: relative path under soak/ → content
        self.dirs: set[str] = {""}  # model: relative dirs ("" = soak/ itself)
        self.n = 0
        self.log_level = "info"
        self.env = {**os.environ, "FICHIER_API_KEY": KEY}
        self.ops_log = open(work / "ops.log", "a")  # noqa: SIM115 - every program and event, for replaying a failure

    # ------------------------------------------------------------------ processes
    def say(self, text: str) -> None:
        print(f"[soak {time.strftime('%H:%M:%S')}] {text}", file=self.out, flush=True)
        self.event(text)

    def event(self, text: str) -> None:
        """One line of ``ops.log`` in the work directory (kept by a failing run)."""
        if self.ops_log.closed:
            return
        self.ops_log.write(f"{time.strftime('%H:%M:%S')}.{int(time.time() * 1000) % 1000:03d} {text}\n")
        self.ops_log.flush()

    def start_emulator(self) -> None:
        err = open(self.work / "emulator.log", "ab")  # noqa: SIM115
        cmd = [PY, "-m", "fichierfs", "emulator", "--state", str(self.state), "--port", str(self.port),
               "--time-scale", str(EMU_SCALE)]
        for _ in range(50):  # the old socket may linger for a moment after a restart
            self.emu = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, cwd=ROOT)
            assert self.emu.stdout is not None
            line = self.emu.stdout.readline().decode().strip()
            if line.startswith("FICHIER_API_URL="):
                err.close()
                return
            self.emu.wait()
            time.sleep(0.2)
        raise RuntimeError("the emulator did not start (see emulator.log)")

    def _stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url.removesuffix("/v1") + "/_emulator/stats", timeout=10) as r:
            return dict(json.load(r))

    def _collect(self) -> None:
        s = self._stats()
        self.fig.flood_locks += int(s["flood_locks"])
        for k, v in s["calls"].items():
            self.fig.calls[k] = self.fig.calls.get(k, 0) + int(v)

    def stop_emulator(self) -> None:
        if self.emu is None:
            return
        try:
            self._collect()
        except OSError as exc:
            self.say(f"stats unavailable before the emulator stopped: {exc}")
        self.emu.send_signal(signal.SIGTERM)
        try:
            self.emu.wait(15)
        except subprocess.TimeoutExpired:
            self.emu.kill()
            self.emu.wait()
        if self.emu.stdout:
            self.emu.stdout.close()
        self.emu = None

    def mount(self) -> None:
        t0 = time.monotonic()
        cmd = [PY, "-m", "fichierfs", "mount", "-f", "--api-url", self.url, "--budget-scale", str(MOUNT_SCALE),
               "--cache-dir", str(self.cache), "--log-file", str(self.work / "mount.log"),
               "--write-back-delay", "0.5", "--log-level", self.log_level, str(self.mnt)]
        self.mount_proc = subprocess.Popen(cmd, env=self.env, stdout=subprocess.DEVNULL,
                                           stderr=open(self.work / "mount.err", "ab"), cwd=ROOT)  # noqa: SIM115
        deadline = time.monotonic() + 120
        while not _mounted(self.mnt):
            if self.mount_proc.poll() is not None:
                raise RuntimeError(f"mount exited {self.mount_proc.returncode} (see mount.log / mount.err)")
            if time.monotonic() > deadline:
                raise RuntimeError("mount did not come up in 120 s")
            time.sleep(0.05)
        self.fig.remount_seconds.append(round(time.monotonic() - t0, 2))

    def kill_mount(self) -> None:
        assert self.mount_proc is not None
        self.event("kill -9 of the mount")
        self.mount_proc.send_signal(signal.SIGKILL)
        self.mount_proc.wait()
        subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)], capture_output=True, check=False)
        self.fig.remounts += 1

    def crashed(self) -> None:
        """The mount went away without being killed by the soak: record why, clean up, remount."""
        assert self.mount_proc is not None
        try:
            self.mount_proc.wait(10)
        except subprocess.TimeoutExpired:
            self.mount_proc.kill()
            self.mount_proc.wait()
        tail = (self.work / "mount.err").read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
        self.fig.crashes.append(f"exit {self.mount_proc.returncode}: {tail[0][-300:]}")
        self.say(f"the mount died on its own (exit {self.mount_proc.returncode}): {tail[0][-300:]}")
        subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)], capture_output=True, check=False)
        self.mount()

    def umount_clean(self, timeout: float) -> bool:
        res = subprocess.run([PY, "-m", "fichierfs", "umount", "--wait", "--drain-timeout", str(timeout),
                              str(self.mnt)], capture_output=True, text=True, cwd=ROOT, check=False)
        if res.returncode != 0:
            self.say(f"umount --wait: {res.stderr.strip()}")
            return False
        if self.mount_proc is not None:
            try:
                self.mount_proc.wait(60)
            except subprocess.TimeoutExpired:
                self.mount_proc.kill()
                self.mount_proc.wait()
        return res.returncode == 0

    def cleanup(self) -> None:
        self.ops_log.flush()
        if _mounted(self.mnt):
            subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)], capture_output=True, check=False)
        if self.mount_proc is not None and self.mount_proc.poll() is None:
            self.mount_proc.kill()
            self.mount_proc.wait()
        self.stop_emulator()

    # ------------------------------------------------------------------ faults
    def inject(self) -> None:
        endpoint, kind = self.rng.choice(FAULTS)
        body = json.dumps({"endpoint": endpoint, "kind": kind, "nth": self.rng.randint(1, 3), "count": 1}).encode()
        req = urllib.request.Request(self.url.removesuffix("/v1") + "/_emulator/fault", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(req, timeout=5).read()
        except OSError:
            return  # the emulator is restarting
        key = f"{endpoint}:{kind}"
        self.fig.faults_injected[key] = self.fig.faults_injected.get(key, 0) + 1
        self.event(f"fault {key}")
        if kind == "flood":
            self.fig.floods_injected += 1

    # ------------------------------------------------------------------ workload
    def p(self, rel: str) -> Path:
        return self.mnt / "soak" / rel

    def run(self, args: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, capture_output=True, text=True, timeout=600, **kw, check=False)

    def _data(self) -> bytes:
        size = self.rng.choice([1, 100, 4096, 20_000, 70_000, 300_000]) + self.rng.randint(0, 999)
        return self.rng.randbytes(size)

    def _local_tree(self) -> Path:
        self.n += 1
        top = self.src / f"t{self.n}"
        (top / "sub").mkdir(parents=True)
        for i in range(self.rng.randint(2, 5)):
            (top / f"f{i}.bin").write_bytes(self._data())
        (top / "sub" / "s.txt").write_bytes(self._data())
        return top

    def _adopt_tree(self, local: Path, rel: str) -> None:
        self.dirs.add(rel)
        for p in sorted(local.rglob("*")):
            r = f"{rel}/{p.relative_to(local)}"
            if p.is_dir():
                self.dirs.add(r)
            else:
                self.files[r] = p.read_bytes()

    def _parent(self) -> str:
        return self.rng.choice(sorted(self.dirs))

    def _join(self, parent: str, name: str) -> str:
        return f"{parent}/{name}" if parent else name

    def op(self) -> tuple[str, list[str], Any]:
        """Pick one operation; returns (name, paths it touches, a callable doing it and updating the model)."""
        files = sorted(self.files)
        choices = ["cp_r", "rsync", "mkdir", "write"]
        if files:
            choices += ["append", "overwrite", "rename", "move", "rm", "read", "read"]
        empty = [d for d in self.dirs if d and not any(k.startswith(d + "/") for k in self.files)
                 and not any(x.startswith(d + "/") for x in self.dirs)]
        if empty:
            choices.append("rmdir")
        trees = [d for d in self.dirs if d]
        if trees:
            choices.append("rm_r")
        if len(self.files) > 1500:  # keep the tree at a size the final check can walk
            choices += ["rm_r"] * 6
        kind = self.rng.choice(choices)
        self.n += 1
        n = self.n
        if kind in ("cp_r", "rsync"):
            local = self._local_tree()
            rel = self._join(self._parent(), f"{kind}{n}")
            if kind == "cp_r":
                args = ["cp", "-r", str(local), str(self.p(rel))]
            else:
                args = ["rsync", "-r", str(local) + "/", str(self.p(rel))]

            def do() -> subprocess.CompletedProcess[str]:
                r = self.run(args)
                if r.returncode == 0:
                    self._adopt_tree(local, rel)
                return r
            return kind, [rel], do
        if kind == "mkdir":
            rel = self._join(self._parent(), f"d{n}")

            def do() -> subprocess.CompletedProcess[str]:
                r = self.run(["mkdir", str(self.p(rel))])
                if r.returncode == 0:
                    self.dirs.add(rel)
                return r
            return kind, [rel], do
        if kind == "rmdir":
            rel = self.rng.choice(sorted(empty))

            def do() -> subprocess.CompletedProcess[str]:
                r = self.run(["rmdir", str(self.p(rel))])
                if r.returncode == 0:
                    self.dirs.discard(rel)
                return r
            return kind, [rel], do
        if kind == "rm_r":
            rel = self.rng.choice(sorted(trees))

            def do() -> subprocess.CompletedProcess[str]:
                r = self.run(["rm", "-r", str(self.p(rel))])
                if r.returncode == 0:
                    for k in [k for k in self.files if k.startswith(rel + "/")]:
                        del self.files[k]
                    for d in [d for d in self.dirs if d == rel or d.startswith(rel + "/")]:
                        self.dirs.discard(d)
                return r
            return kind, [rel], do
        if kind == "write":
            rel = self._join(self._parent(), f"w{n}.bin")
            data = self._data()
            local = self.src / f"w{n}"
            local.write_bytes(data)

            def do() -> subprocess.CompletedProcess[str]:
                r = self.run(["cp", str(local), str(self.p(rel))])
                if r.returncode == 0:
                    self.files[rel] = data
                return r
            return kind, [rel], do
        rel = self.rng.choice(files)
        if kind == "append":
            extra = f"appended {n}\n".encode()

            def do() -> subprocess.CompletedProcess[str]:
                r = self.run(["sh", "-c", 'printf "%s\\n" "$1" >> "$2"', "sh", f"appended {n}", str(self.p(rel))])
                if r.returncode == 0:
                    self.files[rel] += extra
                return r
            return kind, [rel], do
        if kind == "overwrite":
            data = self._data()
            local = self.src / f"o{n}"
            local.write_bytes(data)

            def do() -> subprocess.CompletedProcess[str]:
                r = self.run(["cp", str(local), str(self.p(rel))])
                if r.returncode == 0:
                    self.files[rel] = data
                return r
            return kind, [rel], do
        if kind in ("rename", "move"):
            parent = rel.rpartition("/")[0] if kind == "rename" else self._parent()
            dst = self._join(parent, f"m{n}.bin")

            def do() -> subprocess.CompletedProcess[str]:
                r = self.run(["mv", str(self.p(rel)), str(self.p(dst))])
                if r.returncode == 0:
                    self.files[dst] = self.files.pop(rel)
                return r
            return kind, [rel, dst], do
        if kind == "rm":
            def do() -> subprocess.CompletedProcess[str]:
                r = self.run(["rm", str(self.p(rel))])
                if r.returncode == 0:
                    del self.files[rel]
                return r
            return kind, [rel], do

        def do_read() -> subprocess.CompletedProcess[str]:
            try:
                got = _read(self.p(rel))
            except OSError as exc:
                return subprocess.CompletedProcess(["read", rel], 1, "", str(exc))
            if got != self.files[rel]:
                try:
                    shown = os.stat(self.p(rel)).st_size
                except OSError as exc:
                    shown = -exc.errno if exc.errno else -1
                try:
                    again = _read(self.p(rel))
                except OSError:
                    again = b""
                what = (f"{rel}: {len(got)} bytes read, {len(self.files[rel])} expected (stat: {shown}, read "
                        f"again: {len(again)} bytes, {'right' if again == self.files[rel] else 'wrong'})")
                self.fig.read_mismatches.append(what)
                self.event(f"read mismatch {what}")
            return subprocess.CompletedProcess(["read", rel], 0, "", "")
        return "read", [rel], do_read

    def reconcile(self, paths: list[str]) -> None:
        """After a kill during a program (or a refused one): take what the mount shows for
        ``paths``; EAGAIN (the mount's answer while the API is flood-locked) is waited out."""
        deadline = time.monotonic() + 120
        while True:
            try:
                self._reconcile(paths)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def _reconcile(self, paths: list[str]) -> None:
        for rel in paths:
            p = self.p(rel)
            for k in [k for k in self.files if k == rel or k.startswith(rel + "/")]:
                del self.files[k]
            for d in [d for d in self.dirs if d == rel or d.startswith(rel + "/")]:
                self.dirs.discard(d)
            self.event(f"reconcile {rel}: {'folder' if p.is_dir() else 'file' if p.is_file() else 'absent'}")
            if p.is_dir():
                self.dirs.add(rel)
                for q in sorted(p.rglob("*")):
                    r = f"{rel}/{q.relative_to(p)}"
                    if q.is_dir():
                        self.dirs.add(r)
                    else:
                        self._adopt_file(r, q)
            elif p.is_file():
                self._adopt_file(rel, p)
        # an interrupted cp leaves a partial (or empty) file: 0-byte files are never uploaded (§6), drop them
        for k in [k for k in self.files if not self.files[k]]:
            self.p(k).unlink()
            del self.files[k]

    def _adopt_file(self, rel: str, p: Path) -> None:
        """Take a file the mount lists into the model; one it lists but cannot read is a failure."""
        try:
            self.files[rel] = _read(p, patient=True)
            self.event(f"adopted {rel} ({len(self.files[rel])} bytes)")
        except OSError as exc:
            self.fig.op_failures.append(f"listed but unreadable after a kill: {rel}: {exc}")
            self.say(f"listed but unreadable after a kill: {rel}: {exc}")

    # ------------------------------------------------------------------ main loop
    def soak(self, seconds: float, kill_every: float = 25.0, restart_every: float = 60.0,
             drain_timeout: float = 600.0, least: tuple[int, int, int] = (0, 0, 0)) -> Figures:
        """Run the workload for ``seconds`` — and on, up to 3× as long, until it has had at least
        ``least`` = (kills, emulator restarts, files in the model): a loaded host runs fewer programs
        in the same time, and a short run must still test what it claims to."""
        t_start = time.monotonic()
        self.start_emulator()
        self.mount()
        self.p("").mkdir()
        end = time.monotonic() + seconds
        next_fault = time.monotonic() + self.rng.uniform(0.5, 3)
        def gap(mean: float) -> float:
            return self.rng.uniform(0.5 * mean, 1.5 * mean)

        next_kill = time.monotonic() + gap(kill_every)
        next_restart = time.monotonic() + gap(restart_every)
        last_report = time.monotonic()
        def short() -> bool:
            kills = self.fig.kills_between + self.fig.kills_during
            return kills < least[0] or self.fig.emulator_restarts < least[1] or len(self.files) < least[2]

        while time.monotonic() < end or (short() and time.monotonic() < end + 2 * seconds):
            now = time.monotonic()
            while now >= next_fault:  # every fault due since the last program (a slow one, a loaded host)
                self.inject()
                next_fault += self.rng.uniform(0.5, 3)
            if now >= next_restart:
                self.say("restarting the emulator on its state")
                self.stop_emulator()
                time.sleep(self.rng.uniform(0, 2))  # the mount sees connection refused meanwhile
                self.start_emulator()
                self.fig.emulator_restarts += 1
                next_restart = time.monotonic() + gap(restart_every)
            if self.mount_proc is not None and (self.mount_proc.poll() is not None or not _mounted(self.mnt)):
                self.crashed()
            kind, paths, do = self.op()
            during = now >= next_kill and self.rng.random() < 0.5
            killer: threading.Timer | None = None
            if during:
                killer = threading.Timer(self.rng.uniform(0.0, 0.4), self.kill_mount)
                killer.start()
            res = do()
            self.event(f"{kind} {paths} -> {res.returncode}{' (kill during)' if during else ''}")
            self.fig.ops[kind] = self.fig.ops.get(kind, 0) + 1
            if killer is not None:
                killer.join()
                self.fig.kills_during += 1
                self.mount()
                self.reconcile(paths)
                next_kill = time.monotonic() + gap(kill_every)
                continue
            if res.returncode != 0:
                self.fig.op_failures.append(f"{kind} {paths}: {res.stderr.strip()[-300:]}")
                if not any(w in res.stderr for w in ("Resource temporarily unavailable", "EAGAIN")):
                    self.fig.view_errors.append(f"{kind} {paths}: {res.stderr.strip()[-300:]}")
                self.say(f"{kind} failed: {res.stderr.strip()[-300:]}")
                for rel in paths:  # what the mount shows around it (the nearest folder it shows)
                    parent = rel.rpartition("/")[0]
                    while True:
                        try:
                            shown = sorted(os.listdir(self.p(parent)))
                            break
                        except OSError as exc:
                            if not parent:
                                shown = [f"<{exc}>"]
                                break
                            parent = parent.rpartition("/")[0]
                    model = sorted({k[len(parent) + 1:].split("/")[0] for k in [*self.files, *self.dirs]
                                    if k.startswith(parent + "/" if parent else "") and k != parent})
                    self.event(f"  {parent or '.'}: mount shows {shown}; model has {model}")
                self.reconcile(paths)
            if now >= next_kill:
                self.kill_mount()
                self.fig.kills_between += 1
                self.mount()
                next_kill = time.monotonic() + gap(kill_every)
            if time.monotonic() - last_report > 60:
                last_report = time.monotonic()
                self.say(f"{sum(self.fig.ops.values())} programs run, {len(self.files)} files, "
                         f"{self.fig.kills_between + self.fig.kills_during} kills, {self.fig.emulator_restarts} "
                         f"emulator restarts, {sum(self.fig.faults_injected.values())} faults")
        self.say("workload over: waiting for every upload, then checking the remote tree")
        t0 = time.monotonic()
        clean = self.umount_clean(timeout=drain_timeout)
        self.fig.sync_seconds = round(time.monotonic() - t0, 1)
        if not clean:
            self.fig.op_failures.append(f"umount --wait did not drain in {drain_timeout:.0f} s")
            self.fig.undrained = True
            self.cleanup()
        self.stop_emulator()
        self.check()
        self.fig.seconds = round(time.monotonic() - t_start, 1)
        return self.fig

    def check(self) -> None:
        sys.path.insert(0, str(ROOT))
        from fichierfs.emulator.state import Account

        acct = Account(self.state, time.time)
        try:
            soak = [f for f in acct.subfolders(0) if f.name == "soak"]
            remote: dict[str, list[str]] = {}
            rdirs: set[str] = set()
            if len(soak) != 1:
                self.fig.duplicated.append(f"soak/ folder x{len(soak)}")
            stack = [(soak[0].id, "")] if soak else []
            while stack:
                fid, rel = stack.pop()
                rdirs.add(rel)
                seen: set[str] = set()
                for sub in acct.subfolders(fid):
                    r = self._join(rel, sub.name)
                    if r in seen:
                        self.fig.duplicated.append(r + "/")
                    seen.add(r)
                    stack.append((sub.id, r))
                for rec in acct.files_in(fid):
                    digest = hashlib.sha256(acct.blob_path(rec).read_bytes()).hexdigest()
                    remote.setdefault(self._join(rel, rec.filename), []).append(digest)
        finally:
            acct.close()
        self.fig.files_in_model = len(self.files)
        self.fig.dirs_in_model = len(self.dirs)
        for rel, data in sorted(self.files.items()):
            got = remote.pop(rel, None)
            if got is None:
                self.fig.lost.append(rel)
            elif len(got) > 1:
                self.fig.duplicated.append(rel)
            elif got[0] != hashlib.sha256(data).hexdigest():
                self.fig.wrong_content.append(rel)
        self.fig.extra = sorted(remote)
        self.fig.missing_dirs = sorted(self.dirs - rdirs)
        self.fig.extra_dirs = sorted(rdirs - self.dirs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="scripts/soak", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=None, help="how long the workload runs (default: 10)")
    ap.add_argument("--seconds", type=float, default=None, help="the same in seconds (for the test suite)")
    ap.add_argument("--seed", type=int, default=None, help="random seed (printed; reuse it to replay a run)")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here as JSON")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, state, cache)")
    ap.add_argument("--kill-every", type=float, default=25.0, metavar="S", help="mean seconds between kill -9s")
    ap.add_argument("--drain-timeout", type=float, default=600.0, metavar="S",
                    help="at the end, how long every pending change may take to upload")
    ap.add_argument("--restart-every", type=float, default=60.0, metavar="S",
                    help="mean seconds between emulator restarts")
    ap.add_argument("--at-least", type=int, nargs=3, default=(0, 0, 0), metavar=("KILLS", "RESTARTS", "FILES"),
                    help="run on (up to 3x the time) until there were this many kills, emulator restarts and "
                         "files in the model (the test suite's short run on a loaded host)")
    ap.add_argument("--log-level", default="info,fichierfs.writer=debug,fichierfs.nsops=debug,fichierfs.meta=debug",
                    help="the mount's --log-level (mount.log in the work dir)")
    args = ap.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else 60 * (args.minutes if args.minutes is not None else 10)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    work = Path(tempfile.mkdtemp(prefix="fichierfs-soak."))
    soak = Soak(work, random.Random(seed))
    soak.log_level = args.log_level
    soak.say(f"seed {seed}, {seconds:.0f} s of workload, work dir {work}")
    fig: Figures | None = None
    try:
        fig = soak.soak(seconds, args.kill_every, args.restart_every, args.drain_timeout, tuple(args.at_least))
    finally:
        soak.cleanup()
        if args.keep or fig is None or not fig.ok():
            soak.say(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    doc = {"seed": seed, "ok": fig.ok(), **fig.__dict__}
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2))
    print(json.dumps({k: (v if not isinstance(v, list) or len(v) < 12 else v[:12] + ["…"]) for k, v in doc.items()},
                     indent=2))
    verdict = "PASS" if fig.ok() else "FAIL"
    soak.say(f"{verdict}: {fig.files_in_model} files and {fig.dirs_in_model} folders in the model; lost "
             f"{len(fig.lost)}, duplicated {len(fig.duplicated)}, extra {len(fig.extra)}, wrong content "
             f"{len(fig.wrong_content)}, programs refused {len(fig.view_errors)}, flood locks {fig.flood_locks} (injected {fig.floods_injected})")
    return 0 if fig.ok() else 1


if __name__ == "__main__":
    raise SystemExit(main())
