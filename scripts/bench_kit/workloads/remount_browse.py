"""Remount, then `ls -lR` of a 1,000-folder × 20-file tree (issue 13): listings and seconds, cold and after a remount.

bench_meta.py's ``tree`` part in a worker (see _meta.py). The emulator runs at time scale 0.005 (fichierfs at
budget scale 0.007) so that the cold pass, bound by one listing per folder at 3.5 s × scale each, takes about
25 s instead of ≈ 58 min at the real limits; the remount pass makes no listing, so its figures do not depend on
the scale.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench_kit.common import Sizes
from bench_kit.workloads._meta import MetaPart

if TYPE_CHECKING:
    from bench_kit.runner import Bench


class RemountBrowse(MetaPart):
    name = "remount_browse"
    order = 110
    part = "tree"
    emu_scale = 0.005
    labels = {"cold": "`ls -lR` of 1,000 folders × 20 files, first mount (emulator × 0.005)",
              "remount": "the same `ls -lR` after a remount (same cache directory)"}
    rows = {"cold": "tree_cold_ls_s", "remount": "tree_remount_ls_s"}
    full = {"meta_tree_folders": 1000, "meta_tree_files": 20}
    quick = {"meta_tree_folders": 10, "meta_tree_files": 3}

    def part_args(self, b: Bench) -> dict[str, Any]:
        return {"folders": b.sz.meta_tree_folders, "files": b.sz.meta_tree_files}

    def describe(self, info: dict[str, Any], sz: Sizes) -> str:
        return (f"remount_browse = {sz.meta_tree_folders:,} folders × {sz.meta_tree_files} files, its own emulator "
                f"at time scale {self.emu_scale:g}")

    def meta_cells(self, phase: str, d: dict[str, Any]) -> tuple[str, str]:
        if phase == "cold":
            real = d.get("tree_cold_listings", 0) * 3.5 / 60
            return (f"{d.get('tree_cold_ls_s', 0):.1f} s, {d.get('tree_cold_listings', 0):,.0f} listings "
                    f"(≈ {real:.0f} min at the real limits)", "one listing per folder (the price of no flood lock)")
        listings, secs = d.get("tree_remount_listings"), d.get("tree_remount_ls_s")
        if listings is None or secs is None:
            return "–", "0 listings, < 5 s"
        ok = listings == 0 and secs < 5
        return (f"{secs:.2f} s, **{listings:g} listings** (mount live after {d.get('tree_remount_live_s', 0):.2f} s; "
                f"{d.get('tree_remount_ls_lines', 0):,.0f} lines)", f"0 listings, < 5 s: {'met' if ok else '**not met**'}")
