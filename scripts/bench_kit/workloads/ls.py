"""`ls -lR` of a tree of folders, cold then warm."""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench_kit.common import Phase, Sizes, Workload

if TYPE_CHECKING:
    from bench_kit.runner import Bench


class Ls(Workload):
    name = "ls"
    order = 10
    labels = {"cold": "`ls -lR` tree, cold", "warm": "`ls -lR` tree, warm"}
    reference = True
    full = {"tree_folders": 50, "tree_files": 100}
    quick = {"tree_folders": 4, "tree_files": 15}

    def build(self, b: Bench) -> None:
        rng = random.Random(20240606)
        for d in range(b.sz.tree_folders):
            for i in range(b.sz.tree_files):
                p = b.seed / "tree" / f"dir{d:03d}" / f"file{i:04d}.dat"
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(rng.randbytes(rng.randint(200, 4000)))
        b.info["tree_files"] = b.sz.tree_folders * b.sz.tree_files
        b.info["tree_dirs"] = b.sz.tree_folders

    def describe(self, info: dict[str, Any], sz: Sizes) -> str:
        return f"tree = {info.get('tree_dirs')} folders × {sz.tree_files} files (200 B–4 KB)"

    def phases(self, b: Bench, mnt: Path, meta: dict[str, Any], tag: str) -> list[Phase]:
        cmd = ["ls", "-lR", str(mnt / "tree")]
        return [Phase("cold", cmd, b.work / f"{tag}.ls-cold"), Phase("warm", cmd, b.work / f"{tag}.ls-warm")]

    def check(self, b: Bench, phase: str, status: str, out_path: Path | None, extra: dict[str, Any]) -> str:
        if status != "ok" or out_path is None:
            return status
        text = out_path.read_text(errors="replace")
        n = sum(1 for line in text.splitlines() if line.startswith("-"))
        extra["files_listed"] = n
        return "ok" if n == b.info["tree_files"] else "failed"
