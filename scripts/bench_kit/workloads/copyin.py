"""Copy-in: `cp -r` of many real small files in 10 folders plus one big file, until everything is uploaded."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench_kit.common import KiB, MiB, Phase, Sizes, Workload, human_bytes, rand_file
from bench_kit.workloads._write import flush, make_dest, na_or_error

UPLOAD_SIDE = ("upload/get_upload_server", "upload.cgi", "end.pl")
"""The calls an upload costs (issue 12: 3 per batch of up to 500 files, not per file)."""

if TYPE_CHECKING:
    from bench_kit.runner import Bench


def real_small_files(n: int) -> list[Path]:
    """n real regular files of 1 B..64 KiB from this machine (Debian docs, man pages, licenses)."""
    out: list[Path] = []
    seen: set[str] = set()
    for base in ("/usr/share/doc", "/usr/share/man", "/usr/share/common-licenses", "/usr/share/locale"):
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in sorted(filenames):
                p = Path(dirpath) / name
                try:
                    if p.is_symlink() or not p.is_file() or not 0 < p.stat().st_size <= 64 * KiB:
                        continue
                except OSError:
                    continue
                key = str(p.relative_to(base)).replace("/", "--")
                if key in seen:
                    continue
                seen.add(key)
                out.append(p)
                if len(out) == n:
                    return out
    return out


class CopyIn(Workload):
    name = "copyin"
    order = 50
    labels = {"cold": "copy-in small files + big file, until uploaded"}
    full = {"copy_small": 1000, "copy_big": 64 * MiB}
    quick = {"copy_small": 30, "copy_big": 4 * MiB}

    def build(self, b: Bench) -> None:
        src = b.work / "copyin"
        files = real_small_files(b.sz.copy_small)
        per = max(1, (len(files) + 9) // 10)
        for i, p in enumerate(files):
            dst = src / f"set{i // per:02d}" / (str(p).strip("/").replace("/", "--")[-120:])
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, dst)
        rand_file(src / "big-256.bin", b.sz.copy_big, random.Random(20240609))
        b.info["copy_small"] = len(files)
        b.info["copy_bytes"] = sum(p.stat().st_size for p in src.rglob("*") if p.is_file())

    def describe(self, info: dict[str, Any], sz: Sizes) -> str:
        return (f"copy-in = {info.get('copy_small')} real files from /usr/share (1 B–64 KiB, 10 folders) + one "
                f"{human_bytes(sz.copy_big)} file, {human_bytes(info.get('copy_bytes'))} in all")

    def phases(self, b: Bench, mnt: Path, meta: dict[str, Any], tag: str) -> list[Phase]:
        return [Phase("cold", self.worker_cmd(str(b.work / "copyin"), str(mnt / f"copyin-{tag}"), meta["flush"]))]

    def cell(self, d: dict[str, Any]) -> str:
        calls = d.get("calls") or {}
        n = sum(calls.get(k, 0) for k in UPLOAD_SIDE)
        return f"; {n:g} upload-side calls" if n else ""

    def worker(self, args: list[str]) -> int:
        src, dst, flush_spec = args
        make_dest(dst)
        out: dict[str, Any] = {}
        t0 = time.monotonic()
        r = subprocess.run(["cp", "-r", src + "/.", dst + "/"], check=False, capture_output=True, text=True)
        out["cp_s"] = time.monotonic() - t0
        if r.returncode != 0:
            return na_or_error(r.stderr, "cp")
        out.update(flush(flush_spec))
        print(json.dumps(out))
        return 0
