"""A 12,000-file folder from a cold mount, then after a remount (issue 13): files shown, listing calls, seconds.

bench_meta.py's ``big`` part in a worker (see _meta.py), its own emulator at time scale 0.01 (fichierfs at budget
scale 0.014): a listing answers at most 5,000 results, so the folder completes with ``file/ls`` date windows,
each a repeated listing of the folder (31 s apart at the real limits: ≈ 2 min there, NOTES.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench_kit.common import Sizes
from bench_kit.workloads._meta import MetaPart

if TYPE_CHECKING:
    from bench_kit.runner import Bench


class BigFolder(MetaPart):
    name = "bigfolder"
    order = 111
    part = "big"
    emu_scale = 0.01
    labels = {"cold": "a 12,000-file folder, cold mount, until `ls` shows every file (emulator × 0.01)",
              "remount": "the same folder after a remount"}
    rows = {"cold": "big_cold_seconds", "remount": "big_remount_seconds"}
    full = {"meta_big_files": 12_000}
    quick = {"meta_big_files": 300}

    def part_args(self, b: Bench) -> dict[str, Any]:
        return {"n": b.sz.meta_big_files}

    def describe(self, info: dict[str, Any], sz: Sizes) -> str:
        return f"bigfolder = one folder of {sz.meta_big_files:,} files, its own emulator at time scale {self.emu_scale:g}"

    def meta_cells(self, phase: str, d: dict[str, Any]) -> tuple[str, str]:
        p = f"big_{phase}_"
        shown, files = d.get(p + "shown"), d.get("big_files")
        if shown is None:
            return "–", "every file shown"
        calls = ", ".join(f"{k} {d.get(p + k.replace('/', '_'), 0):g}" for k in ("folder/ls", "file/ls", "file/info"))
        text = (f"**{shown:,.0f} of {files:,.0f}** shown after {d.get(p + 'seconds', 0):.2f} s (first `ls` "
                f"{d.get(p + 'first_ls', 0):,.0f}; `stat` of the last file {d.get(p + 'stat_of_last_file_s', 0):.2f} s); "
                f"{calls}")
        goal = f"all {files:,.0f} shown" + (", 0 listings" if phase == "remount" else "")
        listings = d.get(p + "folder_ls", 0) + d.get(p + "file_ls", 0)
        ok = shown == files and (phase == "cold" or listings == 0)
        return text, f"{goal}: {'met' if ok else '**not met**'}"
