#!/usr/bin/env python3
"""Several mounts of one account at once (issue 14): flood locks and listing calls per coordinator.

Run it as ``.venv/bin/python scripts/bench_multi.py`` (root, /dev/fuse, redis-server; scripts/setup
installs them). For N in 2 and 4 concurrent mounts and each coordinator mode

* ``none``  — each mount paces itself alone (the behaviour before issue 14; kept for this);
* ``host``  — the built-in host budget (no option);
* ``redis`` — ``--coordinator redis://127.0.0.1:PORT/0`` on a real redis-server started here,

it starts one loopback emulator (limits ON, ``--time-scale``), mounts N times and runs
``ls -lR`` plus a read of every file on all mounts at once, then records the emulator's flood
locks, listing calls (folder/ls + file/ls), all API calls and the wall time. Two layouts:
``folders`` (mount i shows /m<i>: the README's two-folder example) and ``same`` (every mount
shows /m0, as two hosts mounting one share would). Finally it times the shared budget's own cost
per API call (acquire + release) for the host file and for Redis on loopback.

Prints a Markdown table and writes the results as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PY = sys.executable
KEY = "emu-bench-multi-key-7c1d"


def _stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


@contextmanager
def emulator(state: Path, seed: Path, scale: float) -> Iterator[str]:
    cmd = [PY, "-m", "fichierfs", "emulator", "--state", str(state), "--time-scale", str(scale), "--seed", str(seed)]
    with open(state.parent / "emulator.log", "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, cwd=ROOT)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().decode().strip()
            assert line.startswith("FICHIER_API_URL="), line
            yield line.split("=", 1)[1]
        finally:
            _stop(proc)


def emu_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url.removesuffix("/v1") + "/_emulator/stats", timeout=10) as r:
        return dict(json.load(r))


def _mounted(path: Path) -> bool:
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == str(path) for line in f)


@contextmanager
def mount(url: str, mnt: Path, cache: Path, folder: str, scale: float, coordinator: str,
          env: dict[str, str]) -> Iterator[Path]:
    mnt.mkdir(parents=True, exist_ok=True)
    cmd = [PY, "-m", "fichierfs", "mount", "-f", "--api-url", url, "--budget-scale", str(scale),
           "--remote-folder", folder, "--cache-dir", str(cache), "--coordinator", coordinator,
           "--log-file", str(mnt.parent / f"{mnt.name}.log"), str(mnt)]
    proc = subprocess.Popen(cmd, env={**os.environ, "FICHIER_API_KEY": KEY, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while not _mounted(mnt):
            assert proc.poll() is None, f"mount exited {proc.returncode}"
            assert time.monotonic() < deadline, "mount did not come up"
            time.sleep(0.05)
        yield mnt
    finally:
        if _mounted(mnt):
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)
        _stop(proc)


@contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    from tests.redis_rig import run_redis

    with run_redis(directory) as r:
        yield r.url


def make_seed(seed: Path, mounts: int, folders: int, files: int) -> None:
    for m in range(mounts):
        for d in range(folders):
            p = seed / f"m{m}" / f"d{d}"
            p.mkdir(parents=True, exist_ok=True)
            for f in range(files):
                (p / f"f{f}.txt").write_text(f"m{m}/d{d}/f{f}\n" * (1 + f))


def workload(mounts: list[Path]) -> tuple[float, int]:
    """``ls -lR`` and a read of every file on every mount, all at once: (wall time, commands that failed)."""
    cmds = []
    for m in mounts:
        cmds += [["ls", "-lR", str(m)], ["sh", "-c", f"find {m} -type f -exec cat {{}} + > /dev/null"]]
    codes: list[int] = []

    def run(cmd: list[str]) -> None:
        codes.append(subprocess.run(cmd, capture_output=True, timeout=600).returncode)

    t0 = time.monotonic()
    threads = [threading.Thread(target=run, args=(c,)) for c in cmds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - t0, sum(1 for c in codes if c != 0)


def run_case(work: Path, n: int, mode: str, layout: str, args: argparse.Namespace) -> dict[str, Any]:
    case = work / f"{mode}-{layout}-{n}"
    case.mkdir(parents=True)
    seed = case / "seed"
    make_seed(seed, n if layout == "folders" else 1, args.folders, args.files)
    env = {"FICHIERFS_HOST_BUDGET": str(case / "host-budget.sqlite3")}
    with ExitStack() as stack:
        coordinator = mode
        if mode == "redis":
            coordinator = stack.enter_context(redis_server(case / "redis"))
        url = stack.enter_context(emulator(case / "state", seed, args.time_scale))
        mnts = [stack.enter_context(mount(url, case / f"mnt{i}", case / f"cache{i}",
                                          f"/m{i}" if layout == "folders" else "/m0",
                                          args.time_scale * 1.4, coordinator, env)) for i in range(n)]
        before = emu_stats(url)
        took, failed = workload(mnts)
        after = emu_stats(url)
    calls = {k: after["calls"].get(k, 0) - before["calls"].get(k, 0) for k in after["calls"]}
    row = {
        "mounts": n, "mode": mode, "layout": layout, "seconds": round(took, 2), "failed_commands": failed,
        "flood_locks": after["flood_locks"] - before["flood_locks"],
        "listings": calls.get("folder/ls", 0) + calls.get("file/ls", 0),
        "api_calls": sum(v for v in calls.values()),
        "folders": (n if layout == "folders" else 1) * args.folders,
    }
    print(json.dumps(row), flush=True)
    return row


def round_trip(work: Path, samples: int) -> dict[str, float]:
    """Microseconds the shared budget adds to one API call (acquire + release), per backend."""
    import trio

    from fichierfs.budget import CallKind, HostBudget, MemoryBudget, Rules, namespace
    from fichierfs.budget_redis import RedisBudget

    free = Rules(0, 0, 0, 0, 0, 60, 1800)
    out: dict[str, float] = {}

    async def time_it(budget: Any) -> float:
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
        with redis_server(work / "rt-redis") as url:
            async with RedisBudget.connect(url, namespace("http://x/v1", "a")) as r:
                out["redis_us"] = await time_it(r)

    trio.run(main)
    return {k: round(v, 1) for k, v in out.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mounts", default="2,4", help="mount counts to run (default 2,4)")
    p.add_argument("--modes", default="none,host,redis")
    p.add_argument("--layouts", default="folders,same")
    p.add_argument("--folders", type=int, default=8, help="sub-folders per mounted folder")
    p.add_argument("--files", type=int, default=5, help="files per sub-folder")
    p.add_argument("--time-scale", type=float, default=0.1, help="emulator limit windows x this (mounts: 1.4 x)")
    p.add_argument("--samples", type=int, default=2000, help="calls timed for the round-trip figure")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    args = p.parse_args()
    if os.geteuid() != 0 or shutil.which("redis-server") is None:
        sys.exit("needs root, /dev/fuse and redis-server (scripts/setup)")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-multi-") as tmp:
        work = Path(tmp)
        for layout in args.layouts.split(","):
            for n in (int(x) for x in args.mounts.split(",")):
                for mode in args.modes.split(","):
                    rows.append(run_case(work, n, mode, layout, args))
        rt = round_trip(work, args.samples)
    print("\n| layout | mounts | coordinator | flood locks | listings (folders) | API calls | failed commands | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['layout']} | {r['mounts']} | {r['mode']} | {r['flood_locks']} | {r['listings']} ({r['folders']}) "
              f"| {r['api_calls']} | {r['failed_commands']} | {r['seconds']} |")
    print(f"\nshared budget per API call (acquire + release, median of {args.samples}): "
          f"in-process {rt['none_us']} µs, host file {rt['host_us']} µs, Redis on loopback {rt['redis_us']} µs")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "round_trip_us": rt, "args": vars(args) | {"json": None}},
                                        indent=1, default=str))


if __name__ == "__main__":
    main()
