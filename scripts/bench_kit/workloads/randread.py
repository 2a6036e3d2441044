"""Random 4 KiB reads of the big file with fio (fixed seed), IOPS and latency: one reader (psync, 1 job: each
read waits for the one before, so a miss costs one request latency) and four readers at once (psync, 4 jobs:
a database or several programs), beside the wire's own figure for one reader (4 KiB ranged GETs one after
the other on one kept-alive connection, straight from the emulator)."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench_kit.common import Phase, Sizes, Workload, ensure_big

if TYPE_CHECKING:
    from bench_kit.runner import Bench

PAR_JOBS = 4


def fio_cmd(path: Path, size: int, seconds: int, jobs: int, seed: int) -> list[str]:
    return ["fio", "--name=randread", f"--filename={path}", "--readonly", "--rw=randread", "--bs=4k",
            f"--size={size}", f"--runtime={seconds}", "--time_based", f"--randseed={seed}", "--ioengine=psync",
            f"--numjobs={jobs}", "--group_reporting", "--invalidate=0", "--output-format=json"]


class RandRead(Workload):
    name = "randread"
    order = 40
    labels = {"cold": "random 4 KiB reads (fio, 1 reader)", "par": f"random 4 KiB reads (fio, {PAR_JOBS} readers)"}
    reference = True
    full = {"fio_seconds": 15}
    quick = {"fio_seconds": 2}

    def build(self, b: Bench) -> None:
        ensure_big(b)

    def describe(self, info: dict[str, Any], sz: Sizes) -> str:
        return (f"fio = `randread`, 4 KiB, psync, 1 job (seed 1234) then {PAR_JOBS} jobs (seed 4321, "
                f"`--group_reporting`), {sz.fio_seconds} s each, on the big file; exact command of the 4 readers: "
                f"`{' '.join(fio_cmd(Path('MNT/big/big.bin'), info.get('big_size', 0), sz.fio_seconds, PAR_JOBS, 4321))}`")

    def before_run(self, b: Bench, run: int) -> None:
        """The wire figure for one reader: 4 KiB ranged GETs at random offsets, one after the other, on one
        kept-alive connection (what one synchronous reader can get from the API at this latency)."""
        b.fresh_emulator()
        size = b.info["big_size"]
        rng = random.Random(1234)
        client = b.fx._client
        assert client is not None
        t0 = time.monotonic()
        n = 0
        try:
            link = b.api("download/get_token", {"url": b.urls["big"], "single": 0})["url"]
            t0 = time.monotonic()
            while time.monotonic() - t0 < min(b.sz.fio_seconds, 10):
                off = rng.randrange(size // 4096) * 4096
                r = client.get(link, headers={"Range": f"bytes={off}-{off + 4095}"})
                if len(r.content) != 4096:
                    raise RuntimeError(f"ranged GET answered {r.status_code} with {len(r.content)} bytes")
                n += 1
            wall = time.monotonic() - t0
            status, extra = "ok", {"iops": n / wall, "ios": n, "read_bytes": n * 4096}
        except Exception as exc:  # noqa: BLE001
            status, wall, extra = "failed", time.monotonic() - t0, {"error": repr(exc)}
        b.record("wire", self.name, "cold", run, status, wall, extra, None)

    def phases(self, b: Bench, mnt: Path, meta: dict[str, Any], tag: str) -> list[Phase]:
        big, size, secs = mnt / "big" / "big.bin", b.info["big_size"], b.sz.fio_seconds
        return [Phase("cold", fio_cmd(big, size, secs, 1, 1234), b.work / f"{tag}.fio.json"),
                Phase("par", fio_cmd(big, size, secs, PAR_JOBS, 4321), b.work / f"{tag}.fio-par.json")]

    def check(self, b: Bench, phase: str, status: str, out_path: Path | None, extra: dict[str, Any]) -> str:
        if status != "ok" or out_path is None:
            return status
        try:
            text = out_path.read_text()
            doc = json.loads(text[text.index("{"):])
            rd = doc["jobs"][0]["read"]  # --group_reporting: one entry for all jobs
            extra["iops"] = rd["iops"]
            extra["kib_s"] = rd["bw"]
            extra["ios"] = rd["total_ios"]
            extra["read_bytes"] = rd["io_bytes"]
            pct = rd.get("clat_ns", {}).get("percentile", {})
            extra["p50_ms"] = pct.get("50.000000", 0) / 1e6
            extra["p99_ms"] = pct.get("99.000000", 0) / 1e6
            if doc["jobs"][0].get("error"):
                return "failed"
        except (ValueError, KeyError, IndexError):
            return "failed"
        return status

    def cell(self, d: dict[str, Any]) -> str:
        if not d.get("iops"):
            return ""
        s = f" — {d['iops']:.0f} IOPS"
        if d.get("p50_ms"):
            s += f", p50 {d['p50_ms']:.2f} ms, p99 {d['p99_ms']:.1f} ms"
        if d.get("over_fetch"):
            s += f", over-fetch {d['over_fetch']:.1f}×"
        return s

    def ratio(self, f: dict[str, Any], r: dict[str, Any]) -> str | None:
        if f.get("iops") and r.get("iops"):
            return f"{f['iops'] / r['iops']:.2f}× rclone's IOPS"
        return None
