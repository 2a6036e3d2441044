"""Two and four mounts of one account at once (issue 14): flood locks and listing calls per coordinator.

For N in 2 and 4 concurrent fichierfs mounts and each ``--coordinator``:

* ``none``  — each mount paces itself alone (the behaviour before issue 14, kept for this);
* ``host``  — the built-in host budget (no option; a host budget file of this case's own);
* ``redis`` — a real redis-server on loopback (``--coordinator redis://127.0.0.1:PORT/0``);

mount i shows ``/multi/m<i % 2>`` (two folders, as in the README's example, and with 4 mounts two
mounts per folder, as two hosts mounting one share), then ``ls -lR`` and a read of every file run on
every mount at once. Recorded: the emulator's flood locks, listing calls and API calls, commands that
failed, and the wall time. Last, the time the shared budget adds per API call (acquire + release:
in-process, host file, Redis on loopback), timed in a worker. Only the first run is measured (it
takes about 2 min): the figures are counts, not medians. ``--quick`` runs 2 mounts, host and Redis.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench_kit.common import Sizes, Workload, log
from tests.harness.procs import kill_group

if TYPE_CHECKING:
    from bench_kit.runner import Bench

MODES = ("none", "host", "redis")
COUNTS = (2, 4)
LABEL = {"none": "uncoordinated", "host": "built in (host)", "redis": "Redis"}


class Multi(Workload):
    name = "multi"
    order = 90
    labels = {**{f"{n}-{m}": f"{n} mounts of one account, {LABEL[m]}" for n in COUNTS for m in MODES},
              "rtt": "shared budget, time added per API call"}
    mounts = ("fichierfs",)
    full = {"multi_folders": 3, "multi_files": 4, "multi_timeout": 25.0}
    quick = {"multi_folders": 2, "multi_files": 2, "multi_timeout": 15.0}

    def build(self, b: Bench) -> None:
        for m in range(2):
            for d in range(b.sz.multi_folders):
                p = b.seed / "multi" / f"m{m}" / f"d{d}"
                p.mkdir(parents=True, exist_ok=True)
                for f in range(b.sz.multi_files):
                    (p / f"f{f}.txt").write_text(f"m{m}/d{d}/f{f}\n" * (1 + 40 * f))

    def describe(self, info: dict[str, Any], sz: Sizes) -> str:
        return (f"two mounts = 2 folders × {sz.multi_folders} sub-folders × {sz.multi_files} files; mount i shows "
                "folder i % 2; `ls -lR` + read every file on every mount at once")

    def cell(self, d: dict[str, Any]) -> str:
        if d.get("redis_us") is not None:
            return (f" (in-process {d.get('none_us', 0):.0f} µs, host file {d.get('host_us', 0):.0f} µs, "
                    f"Redis {d['redis_us']:.0f} µs)")
        if d.get("listings") is None:
            return ""
        return (f", {d['listings']:g} listings for {d.get('folders', 0):g} sub-folders, "
                f"{d.get('failed_commands', 0):g} failed")

    def run(self, b: Bench, kind: str, run: int) -> bool:
        if run > 1:
            return True  # counts, not timings: one run is the figure (and keeps the bench short)
        for n in COUNTS[:1] if b.sz.quick else COUNTS:  # --quick (the smoke test): 2 mounts, coordinated only
            for mode in MODES[1:] if b.sz.quick else MODES:
                self._case(b, kind, n, mode)
        b.fresh_emulator()
        status, wall, extra = b.timed(self.worker_cmd("rtt", str(b.work / "multi-rtt")))
        b.record(kind, self.name, "rtt", run, status, None, extra, None)
        return True

    def _case(self, b: Bench, kind: str, n: int, mode: str) -> None:
        from tests.redis_rig import run_redis

        tag = f"{b.pass_[:3]}-multi-{n}-{mode}"
        case = b.work / tag
        case.mkdir(parents=True, exist_ok=True)
        saved = os.environ.get("FICHIERFS_HOST_BUDGET")
        os.environ["FICHIERFS_HOST_BUDGET"] = str(case / "host-budget.sqlite3")  # read by start_mount's env
        mounts: list[tuple[Any, Path, Path]] = []
        try:
            with contextlib.ExitStack() as stack:
                coordinator = mode if mode != "redis" else stack.enter_context(run_redis(case / "redis")).url
                b.fresh_emulator()
                t0 = time.monotonic()
                try:
                    for i in range(n):
                        if i and mode == "none":  # mounts started one folder window apart: the start-up
                            time.sleep(31 * b.budget_scale)  # itself is not what is measured here
                        cache = b.work / "cache" / f"{tag}-{i}"
                        if mounts:  # the key's account is known, as with one cache directory: no user/info
                            cache.mkdir(parents=True, exist_ok=True)
                            shutil.copy2(mounts[0][2] / "accounts.json", cache / "accounts.json")
                        proc, mnt, cache, _ = b.start_mount(kind, f"{tag}-{i}", cache=cache, extra_args=[
                            "--remote-folder", f"/multi/m{i % 2}", "--coordinator", coordinator])
                        mounts.append((proc, mnt, cache))
                except RuntimeError as exc:
                    b.record(kind, self.name, f"{n}-{mode}", 1, "failed", None, {"error": str(exc)[-600:]}, None)
                    return
                b.fresh_emulator()  # count the workload, not the mounts' start-up
                t1 = time.monotonic()
                wall, failed = _at_once([m for _, m, _ in mounts], b.sz.multi_timeout)
                calls = b.fx.stats()["calls"]
                extra = {"listings": calls.get("folder/ls", 0) + calls.get("file/ls", 0), "failed_commands": failed,
                         "folders": 2 * b.sz.multi_folders, "mounts": n, "start_s": round(t1 - t0, 2)}
                b.record(kind, self.name, f"{n}-{mode}", 1, "ok" if not failed else "failed", wall, extra,
                         mounts[0][0].pid)
        finally:
            t2 = time.monotonic()
            for proc, mnt, cache in mounts:
                b.stop_mount(proc, mnt, cache)
            log(f"multi {n}-{mode}: mounts stopped in {time.monotonic() - t2:.1f} s")
            if saved is None:
                os.environ.pop("FICHIERFS_HOST_BUDGET", None)
            else:
                os.environ["FICHIERFS_HOST_BUDGET"] = saved

    def worker(self, args: list[str]) -> int:
        """``rtt DIR``: microseconds the shared budget adds to one API call (acquire + release), median."""
        import trio

        from fichierfs.budget import CallKind, HostBudget, MemoryBudget, Rules, namespace
        from fichierfs.budget_redis import RedisBudget
        from tests.redis_rig import run_redis

        work = Path(args[1])
        work.mkdir(parents=True, exist_ok=True)
        free = Rules(0, 0, 0, 0, 0, 60, 1800, 0)
        out: dict[str, float] = {}

        async def time_it(budget: Any, samples: int = 500) -> float:
            times = []
            for _ in range(samples):
                t0 = time.perf_counter()
                await budget.acquire(CallKind(), free)
                await budget.release(CallKind(), reached=True)
                times.append(time.perf_counter() - t0)
            return statistics.median(times) * 1e6

        async def main() -> None:
            out["none_us"] = await time_it(MemoryBudget())
            host = HostBudget(work / "rt.sqlite3", namespace("http://x/v1"))
            out["host_us"] = await time_it(host)
            await host.aclose()
            with run_redis(work / "redis") as r:
                async with RedisBudget.connect(r.url, namespace("http://x/v1", "a")) as budget:
                    out["redis_us"] = await time_it(budget)

        trio.run(main)
        print(json.dumps({k: round(v, 1) for k, v in out.items()}))
        return 0


def _at_once(mounts: list[Path], timeout: float) -> tuple[float, int]:
    """``ls -lR`` and a read of every file on every mount, all at once: (wall time, commands that failed)."""
    cmds: list[list[str]] = []
    for m in mounts:
        cmds += [["ls", "-lR", str(m)], ["sh", "-c", f"find {m} -type f -exec cat {{}} + > /dev/null"]]
    codes: list[int] = []

    def one(cmd: list[str]) -> None:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            codes.append(proc.wait(timeout))
        except subprocess.TimeoutExpired:
            log(f"multi: {' '.join(cmd[:2])} timed out after {timeout:g} s")
            kill_group(proc)  # find's cat children too
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)
            codes.append(-1)

    t0 = time.monotonic()
    threads = [threading.Thread(target=one, args=(c,)) for c in cmds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - t0, sum(1 for c in codes if c != 0)
