"""Random 4 KiB reads of the big file with fio (psync, one job, fixed seed), IOPS and latency."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench_kit.common import Phase, Sizes, Workload, ensure_big

if TYPE_CHECKING:
    from bench_kit.runner import Bench


class RandRead(Workload):
    name = "randread"
    order = 40
    labels = {"cold": "random 4 KiB reads (fio)"}
    reference = True
    full = {"fio_seconds": 30}
    quick = {"fio_seconds": 2}

    def build(self, b: Bench) -> None:
        ensure_big(b)

    def describe(self, info: dict[str, Any], sz: Sizes) -> str:
        return f"fio = `randread`, 4 KiB, psync, 1 job, seed 1234, {sz.fio_seconds} s, on the big file"

    def phases(self, b: Bench, mnt: Path, meta: dict[str, Any], tag: str) -> list[Phase]:
        cmd = ["fio", "--name=randread", f"--filename={mnt / 'big' / 'big.bin'}", "--readonly", "--rw=randread",
               "--bs=4k", f"--size={b.info['big_size']}", f"--runtime={b.sz.fio_seconds}", "--time_based",
               "--randseed=1234", "--ioengine=psync", "--numjobs=1", "--invalidate=0", "--output-format=json"]
        return [Phase("cold", cmd, b.work / f"{tag}.fio.json")]

    def check(self, b: Bench, phase: str, status: str, out_path: Path | None, extra: dict[str, Any]) -> str:
        if status != "ok" or out_path is None:
            return status
        try:
            text = out_path.read_text()
            doc = json.loads(text[text.index("{"):])
            rd = doc["jobs"][0]["read"]
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
        s = f" — {d['iops']:.0f} IOPS, p50 {d['p50_ms']:.2f} ms, p99 {d['p99_ms']:.1f} ms"
        if d.get("over_fetch"):
            s += f", over-fetch {d['over_fetch']:.1f}×"
        return s

    def ratio(self, f: dict[str, Any], r: dict[str, Any]) -> str | None:
        if f.get("iops") and r.get("iops"):
            return f"{f['iops'] / r['iops']:.2f}× rclone's IOPS"
        return None
