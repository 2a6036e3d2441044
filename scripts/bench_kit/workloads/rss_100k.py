"""Memory with 100,000 known files and the start-up from the persisted cache (issue 13.6).

bench_meta.py's ``scale`` part (1,000 folders × 100 files: a cold `ls -lR`, then a remount: start-up, `ls -lR`,
the mount's RSS against an empty mount's) and its ``core`` part (the same numbers of entries in-process: bytes
per entry with tracemalloc, seconds to persist them and to load them back), in a worker (see _meta.py). The
emulator runs at time scale 0.002 (fichierfs at budget scale 0.0028): the cold pass only fills the cache.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench_kit.common import MiB, Sizes
from bench_kit.workloads._meta import MetaPart

if TYPE_CHECKING:
    from bench_kit.runner import Bench


class Rss100k(MetaPart):
    name = "rss_100k"
    order = 112
    part = "scale,core"
    emu_scale = 0.002
    labels = {"remount": "a mount with 100,000 known files (1,000 folders × 100), after a remount (emulator × 0.002)"}
    rows = {"remount": "scale_remount_live_s"}
    full = {"meta_rss_folders": 1000, "meta_rss_files": 100}
    quick = {"meta_rss_folders": 10, "meta_rss_files": 10}

    def part_args(self, b: Bench) -> dict[str, Any]:
        return {"folders": b.sz.meta_rss_folders, "files": b.sz.meta_rss_files}

    def describe(self, info: dict[str, Any], sz: Sizes) -> str:
        return (f"rss_100k = {sz.meta_rss_folders:,} folders × {sz.meta_rss_files} files, its own emulator at time "
                f"scale {self.emu_scale:g}")

    def meta_cells(self, phase: str, d: dict[str, Any]) -> tuple[str, str]:
        rss = d.get("scale_remount_rss_VmRSS")
        if rss is None:
            return "–", "stated, measured"
        return (f"RSS **{rss / MiB:.0f} MiB** (empty mount {d.get('scale_empty_mount_rss', 0) / MiB:.0f} MiB): "
                f"**{d.get('scale_rss_per_entry_bytes', 0):,.0f} B per entry**; in-process "
                f"{d.get('core_bytes_per_entry', 0):,.0f} B per entry (tracemalloc); start-up from the persisted "
                f"cache: mount live after **{d.get('scale_remount_live_s', 0):.2f} s** (DB load "
                f"{d.get('core_startup_load_s', 0):.2f} s in-process), then `ls -lR` {d.get('scale_remount_ls_s', 0):.2f} s "
                f"with {d.get('scale_remount_listings', 0):g} listings; DB {d.get('scale_db_bytes', 0) / MiB:.0f} MiB",
                "issue 13.6: state memory per entry and start-up (no number set); 0 listings after the remount: "
                f"{'met' if d.get('scale_remount_listings') == 0 else '**not met**'}")
