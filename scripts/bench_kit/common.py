"""What every part of the benchmark shares: sizes, one run's record, the workload interface, small helpers."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from bench_kit.runner import Bench

ROOT = Path(__file__).resolve().parents[2]
BENCH_PY = ROOT / "scripts" / "bench.py"
PY = sys.executable
KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
MOUNTS = ("fichierfs", "rclone")
RC_ADDR = "127.0.0.1:5572"
NA_WRITE = "n/a: write side not available"


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


def human_bytes(n: float | None) -> str:
    if n is None:
        return "–"
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


@dataclass(frozen=True)
class Sizes:
    """Run-wide sizes plus every workload's own parameters (``params``, from its FULL / QUICK dicts)."""

    runs: int
    timeout: float
    quick: bool
    params: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:  # sz.big_size etc.: a workload parameter
        try:
            return self.__dict__["params"][name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass
class Run:
    mount: str           # fichierfs | rclone | wire
    workload: str
    phase: str           # cold | warm | …
    run: int
    status: str          # ok | timed out | failed | failed (flood-locked) | n/a ...
    wall: float | None
    calls: dict[str, int] = field(default_factory=dict)
    flood_locks: int = 0
    bytes_down: int = 0
    bytes_up: int = 0
    rss_kib: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    pass_: str = "main"  # main | reference | lenient …

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class Phase:
    """One timed step of a workload on a mount: the command, where its stdout goes, its working directory."""

    name: str
    cmd: list[str]
    stdout: Path | None = None
    cwd: Path | None = None


class Workload:
    """One workload, one file in bench_kit/workloads/. Subclass it there and set the class attributes.

    The runner calls ``build`` once (inputs into ``b.work``; what goes to 1fichier into ``b.seed``), then for
    every run: ``before_run`` (e.g. the wire-limit GET), and for every mount kind ``run`` (default: a fresh
    mount, ``phases`` timed one after the other, ``check`` on each, counters recorded per phase). Override
    ``run`` for workloads that need several mounts or a remount (use ``b.start_mount`` / ``b.stop_mount`` /
    ``b.timed`` / ``b.record``)."""

    name: ClassVar[str] = ""
    order: ClassVar[int] = 100                 # position in the tables
    labels: ClassVar[dict[str, str]] = {}      # phase -> row label in the report
    mounts: ClassVar[tuple[str, ...]] = MOUNTS  # the mount kinds it applies to
    reference: ClassVar[bool] = False          # part of the reference pass by default
    time_scale: ClassVar[float | None] = None  # its own emulator time scale (1 = real limits); None: the run's
    full: ClassVar[dict[str, Any]] = {}        # parameters at full size
    quick: ClassVar[dict[str, Any]] = {}       # parameters with --quick
    timeout: ClassVar[float | None] = None     # seconds per phase when longer than the run's --timeout
    bare: ClassVar[bool] = False                # emulator without added latency or bandwidth cap
    table: ClassVar[str] = "main"              # main: fichierfs vs rclone; meta: "Metadata at account scale"

    def build(self, b: Bench) -> None:
        """Create the inputs (deterministic)."""

    def describe(self, info: dict[str, Any], sz: Sizes) -> str:
        """One sentence for the report's Data paragraph."""
        return ""

    def before_run(self, b: Bench, run: int) -> None:
        """Once per run number, before the mounts (e.g. a direct measurement)."""

    def phases(self, b: Bench, mnt: Path, meta: dict[str, Any], tag: str) -> list[Phase]:
        raise NotImplementedError

    def check(self, b: Bench, phase: str, status: str, out_path: Path | None, extra: dict[str, Any]) -> str:
        """Verify an 'ok' phase (files listed, CRC, fio's JSON…); returns the status to record."""
        return status

    def run(self, b: Bench, kind: str, run: int) -> bool:
        return b.run_phases(self, kind, run)

    def worker(self, args: list[str]) -> int:
        """Body of ``scripts/bench.py --worker NAME ARGS`` (a workload step run in its own process group)."""
        raise SystemExit(f"workload {self.name} has no worker")

    def cell(self, d: dict[str, Any]) -> str:
        """Extra text after the time in this workload's table cells (d: summarize() of one mount)."""
        return ""

    def ratio(self, f: dict[str, Any], r: dict[str, Any]) -> str | None:
        """The fichierfs / rclone cell when the time ratio is not the right comparison."""
        return None

    def meta_cells(self, phase: str, d: dict[str, Any]) -> tuple[str, str]:
        """For ``table = "meta"`` workloads: (figures, goal and verdict) of one phase (d: summarize() of it)."""
        return "", ""

    def worker_cmd(self, *args: str) -> list[str]:
        return [PY, str(BENCH_PY), "--worker", self.name, *args]


def rand_file(path: Path, size: int, rng: Any) -> None:
    """``size`` bytes of ``rng.randbytes`` into ``path`` (deterministic for a seeded rng)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 8 * MiB)
            f.write(rng.randbytes(n))
            left -= n


def ensure_big(b: Bench) -> None:
    """The big file (seed/big/big.bin) shared by the sequential and random read workloads; its size and CRC go
    into ``b.info``."""
    import random
    import zlib

    if "big_crc" in b.info:
        return
    size = b.sz.big_size
    big = b.seed / "big" / "big.bin"
    rand_file(big, size, random.Random(20240607))
    crc = 0
    with open(big, "rb") as f:
        while chunk := f.read(8 * MiB):
            crc = zlib.crc32(chunk, crc)
    b.info["big_crc"] = crc
    b.info["big_size"] = size
