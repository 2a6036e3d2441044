"""`tar -x` of real source files into the mount, until uploaded, then `sha256sum -c` of what was written."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench_kit.common import Phase, Sizes, Workload, human_bytes
from bench_kit.workloads._write import flush, make_dest, na_or_error

if TYPE_CHECKING:
    from bench_kit.runner import Bench

STDLIB_FULL = ("asyncio", "email", "json", "http", "urllib", "logging", "xml", "concurrent", "importlib", "unittest",
               "multiprocessing", "collections", "sqlite3", "wsgiref", "xmlrpc", "html", "ctypes", "curses", "dbm",
               "encodings", "tomllib", "zoneinfo")


class Tar(Workload):
    name = "tar"
    order = 60
    labels = {"cold": "`tar -x` + upload + `sha256sum -c`"}
    full = {"tar_dirs": STDLIB_FULL}
    quick = {"tar_dirs": ("json",)}

    def build(self, b: Bench) -> None:
        stdlib = Path(f"/usr/lib/python3.{sys.version_info.minor}")
        if not stdlib.is_dir():
            stdlib = Path(os.__file__).parent
        tarball = b.work / "source.tar"
        n_tar = 0
        with tarfile.open(tarball, "w") as tar:
            for sub in b.sz.tar_dirs:
                base = stdlib / sub
                if not base.is_dir():
                    continue
                for p in sorted(base.rglob("*.py")):
                    if "__pycache__" in p.parts or "test" in p.parts or "tests" in p.parts or p.stat().st_size == 0:
                        continue
                    tar.add(p, arcname=f"stdlib/{p.relative_to(stdlib)}", recursive=False)
                    n_tar += 1
        sums = []
        with tarfile.open(tarball) as tar:
            for m in tar.getmembers():
                f = tar.extractfile(m) if m.isfile() else None
                if f is not None:
                    sums.append(f"{hashlib.sha256(f.read()).hexdigest()}  {m.name}\n")
        (b.work / "source.sha256").write_text("".join(sums))
        b.info["tar_files"] = n_tar
        b.info["tar_source"] = f"{stdlib} ({', '.join(b.sz.tar_dirs)}; *.py)"
        b.info["tar_bytes"] = tarball.stat().st_size

    def describe(self, info: dict[str, Any], sz: Sizes) -> str:
        return (f"tarball = {info.get('tar_files')} real source files ({info.get('tar_source')}), "
                f"{human_bytes(info.get('tar_bytes'))}")

    def phases(self, b: Bench, mnt: Path, meta: dict[str, Any], tag: str) -> list[Phase]:
        return [Phase("cold", self.worker_cmd(str(b.work / "source.tar"), str(b.work / "source.sha256"),
                                              str(mnt / f"tar-{tag}"), meta["flush"]))]

    def worker(self, args: list[str]) -> int:
        tarball, sums, dst, flush_spec = args
        make_dest(dst)
        out: dict[str, Any] = {}
        t0 = time.monotonic()
        r = subprocess.run(["tar", "-xf", tarball, "-C", dst], check=False, capture_output=True, text=True)
        out["tar_s"] = time.monotonic() - t0
        if r.returncode != 0:
            return na_or_error(r.stderr, "tar")
        out.update(flush(flush_spec))
        t1 = time.monotonic()
        r = subprocess.run(["sha256sum", "--quiet", "-c", sums], check=False, capture_output=True, text=True, cwd=dst)
        out["check_s"] = time.monotonic() - t1
        out["checksums_ok"] = r.returncode == 0
        if r.returncode != 0:
            out["error"] = (r.stdout + r.stderr)[-800:]
        print(json.dumps(out))
        return r.returncode
