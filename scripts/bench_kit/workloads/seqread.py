"""Sequential read of the big file (CRC checked), beside the wire limit: the same bytes in one direct ranged GET."""

from __future__ import annotations

import json
import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench_kit.common import MiB, Phase, Sizes, Workload, ensure_big, human_bytes

if TYPE_CHECKING:
    from bench_kit.runner import Bench


class SeqRead(Workload):
    name = "seqread"
    order = 30
    labels = {"cold": "sequential read of the big file"}
    reference = True
    full = {"big_size": 256 * MiB}
    quick = {"big_size": 24 * MiB}

    def build(self, b: Bench) -> None:
        ensure_big(b)

    def describe(self, info: dict[str, Any], sz: Sizes) -> str:
        return f"big file = {human_bytes(info.get('big_size'))} (random bytes, CRC checked on read)"

    def before_run(self, b: Bench, run: int) -> None:
        self.wire_get(b, self.name, run)

    @staticmethod
    def wire_get(b: Bench, workload: str, run: int) -> None:
        """The wire limit: one token, one ranged GET of the whole file with curl."""
        b.fresh_emulator()
        size = b.info["big_size"]
        t0 = time.monotonic()
        try:
            link = b.api("download/get_token", {"url": b.urls["big"], "single": 0})["url"]
            cmd = ["curl", "-sS", "--fail", "--cacert", str(b.fx.ca_pem), "-o", "/dev/null",
                   "-r", f"0-{size - 1}", "-w", "%{size_download}", link]
            status, wall, extra = b.timed(cmd)
            wall = time.monotonic() - t0
        except Exception as exc:  # noqa: BLE001
            status, wall, extra = "failed", time.monotonic() - t0, {"error": repr(exc)}
        if status == "ok":
            extra["mib_s"] = size / MiB / wall
        b.record("wire", workload, "cold", run, status, wall, extra, None)

    def phases(self, b: Bench, mnt: Path, meta: dict[str, Any], tag: str) -> list[Phase]:
        return [Phase("cold", self.worker_cmd(str(mnt / "big" / "big.bin"), str(b.info["big_size"]),
                                              str(b.info["big_crc"])))]

    def check(self, b: Bench, phase: str, status: str, out_path: Path | None, extra: dict[str, Any]) -> str:
        return "failed" if status == "ok" and extra.get("mib_s") is None else status

    def worker(self, args: list[str]) -> int:
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
        print(json.dumps({"bytes": got, "crc_ok": c == crc, "read_s": dt, "mib_s": got / MiB / dt if dt else None}))
        return 0 if got == size and c == crc else 1

    def cell(self, d: dict[str, Any]) -> str:
        return f" ({d['mib_s']:.1f} MiB/s)" if d.get("mib_s") else ""
