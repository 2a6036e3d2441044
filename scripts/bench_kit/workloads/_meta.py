"""What the account-scale metadata workloads share (issue 13): one part of ``scripts/bench_meta.py`` run in a worker.

Each of them runs a part of ``bench_meta.py`` (the functions are that script's, not copies) in a worker process:
its own emulator (an ephemeral loopback port, its own state and seed, limits ON at the workload's time scale)
and its own fichierfs mounts. The run's shared emulator is not used, so its seed does not grow by 133,000
files and the other workloads' trees stay as they are. The worker prints the part's figures as one JSON line;
the runner records one row per phase with the phase's own seconds as its time. fichierfs only: rclone keeps no
listings across mounts (nothing persisted to measure).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from bench_kit.common import Workload

if TYPE_CHECKING:
    from bench_kit.runner import Bench


def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A part's nested figures as one level (``remount.folder/ls`` → ``remount_folder_ls``), numbers only."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}".replace("/", "_")
        if isinstance(v, dict):
            out.update(flat(v, f"{key}_"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = v
    return out


class MetaPart(Workload):
    """A ``bench_meta.py`` part as a workload. Subclasses set ``part``, ``emu_scale``, ``rows`` and ``args``."""

    mounts = ("fichierfs",)
    table = "meta"
    timeout = 240.0
    part: ClassVar[str] = ""
    emu_scale: ClassVar[float] = 0.01
    rows: ClassVar[dict[str, str]] = {}  # phase -> the figure (seconds, "part_key") that is its time

    def part_args(self, b: Bench) -> dict[str, Any]:
        return {}

    def run(self, b: Bench, kind: str, run: int) -> bool:
        work = b.work / f"{b.pass_[:3]}-{self.name}-{run}"
        cmd = self.worker_cmd(self.part, str(work), str(self.emu_scale), json.dumps(self.part_args(b)))
        t0 = time.monotonic()
        status, wall, extra = b.timed(cmd, None, None, None, self.timeout)
        extra["workload_s"] = round(time.monotonic() - t0, 1)
        extra["emu_scale"] = self.emu_scale
        ok = status == "ok"
        for phase, key in self.rows.items():
            secs = extra.get(key)
            st = status if not ok or secs is not None else "failed (no figure)"
            b.record(kind, self.name, phase, run, st, secs if ok else wall, dict(extra), None)
        return ok

    def worker(self, args: list[str]) -> int:
        """``PART WORKDIR SCALE KWARGS``: one bench_meta part; its figures as one JSON line."""
        import bench_meta

        part, work, scale, kwargs = args[0], Path(args[1]), float(args[2]), json.loads(args[3])
        bench_meta.SCALES["emulator"] = scale
        bench_meta.SCALES["mount"] = round(scale * 1.4, 8)
        work.mkdir(parents=True, exist_ok=True)
        res: dict[str, Any] = {}
        for p in part.split(","):  # "scale,core": several parts, their figures prefixed by the part's name
            (work / p).mkdir()
            res[p] = bench_meta.PARTS[p](work / p, **kwargs)
        print(json.dumps(flat(res)), flush=True)
        return 0
