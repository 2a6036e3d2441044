"""Loopback: the big file read sequentially with no added latency and no bandwidth cap, beside a direct ranged
GET of the same bytes in the same run: what the mount itself costs (CPU, copies, FUSE round trips)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench_kit.common import MiB, Phase, Sizes, Workload, ensure_big
from bench_kit.workloads.seqread import SeqRead

if TYPE_CHECKING:
    from bench_kit.runner import Bench


class Loopback(Workload):
    name = "loopback"
    order = 35
    labels = {"cold": "sequential read on bare loopback (disk cache on, the default)",
              "nodisk": "sequential read on bare loopback, --disk-cache-size 0"}
    mounts = ("fichierfs",)
    bare = True

    def build(self, b: Bench) -> None:
        ensure_big(b)

    def describe(self, info: dict[str, Any], sz: Sizes) -> str:
        return ("loopback = the big file read with the emulator restarted without latency or bandwidth cap "
                "(same TLS), beside one direct ranged GET of it (curl, and Python httpx as the mount uses)")

    def before_run(self, b: Bench, run: int) -> None:
        """Two direct GETs of the whole file: curl (C) and httpx (the mount's own HTTP stack, in-process)."""
        SeqRead.wire_get(b, self.name, run)
        b.fresh_emulator()
        size = b.info["big_size"]
        client = b.fx._client
        assert client is not None
        t0 = time.monotonic()
        try:
            link = b.api("download/get_token", {"url": b.urls["big"], "single": 0})["url"]
            t0 = time.monotonic()
            got = 0
            with client.stream("GET", link, headers={"Range": f"bytes=0-{size - 1}"}) as r:
                for piece in r.iter_bytes(1 * MiB):
                    got += len(piece)
            wall = time.monotonic() - t0
            status = "ok" if got == size else "failed"
            extra: dict[str, Any] = {"mib_s": size / MiB / wall}
        except Exception as exc:  # noqa: BLE001
            status, wall, extra = "failed", time.monotonic() - t0, {"error": repr(exc)}
        b.record("httpx", self.name, "cold", run, status, wall, extra, None)

    def run(self, b: Bench, kind: str, run: int) -> bool:
        def phases(name: str) -> Callable[[Path], list[Phase]]:
            def make(mnt: Path) -> list[Phase]:
                return [Phase(name, SeqRead().worker_cmd(str(mnt / "big" / "big.bin"), str(b.info["big_size"]),
                                                         str(b.info["big_crc"])))]
            return make

        ok = b.run_phases(self, kind, run, phases_for=phases("cold"))
        return b.run_phases(self, kind, run, phases_for=phases("nodisk"), extra_args=["--disk-cache-size", "0"],
                            tag_suffix="-nodisk") and ok

    def check(self, b: Bench, phase: str, status: str, out_path: Path | None, extra: dict[str, Any]) -> str:
        return "failed" if status == "ok" and extra.get("mib_s") is None else status

    def cell(self, d: dict[str, Any]) -> str:
        return f" ({d['mib_s']:.1f} MiB/s)" if d.get("mib_s") else ""
