"""Head storm after a remount: the head storm's files read on a first mount, the mount stopped, a new mount on the
same cache directory, and the storm again (issue 15.2: the on-disk read cache; rclone: --vfs-cache-mode full
keeps its cache directory too when --rclone-cache-mode full is given)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bench_kit.common import Sizes, Workload
from bench_kit.workloads.heads import Heads

if TYPE_CHECKING:
    from bench_kit.runner import Bench


class HeadsRemount(Workload):
    name = "heads_remount"
    order = 25
    labels = {"remount": "head storm after a remount (same cache directory)"}
    reference = True

    def build(self, b: Bench) -> None:
        if "heads" not in b.workloads:
            Heads().build(b)

    def describe(self, info: dict[str, Any], sz: Sizes) -> str:
        return "head storm after remount = the head storm's files, read once, remounted, read again"

    def run(self, b: Bench, kind: str, run: int) -> bool:
        tag = f"{b.pass_[:3]}-{kind}-{self.name}-{run}"
        cmd = Heads().worker_cmd(str(b.work / "mnt" / f"{tag}-b" / "heads"), str(b.work / "heads.json"))
        b.fresh_emulator()
        try:
            proc, mnt, cache, _meta = b.start_mount(kind, f"{tag}-a")
        except RuntimeError as exc:
            b.record(kind, self.name, "remount", run, "failed", None, {"error": str(exc)[-600:]}, None)
            return False
        try:
            status, wall, extra = b.timed([*cmd[:4], str(mnt / "heads"), *cmd[5:]], None, None, mnt)
        finally:
            b.stop_mount(proc, mnt, None)  # keep the cache directory
        if status != "ok":
            b.record(kind, self.name, "remount", run, f"first pass {status}", None, extra, None)
            return False
        b.fresh_emulator()
        try:
            proc, mnt, _, meta = b.start_mount(kind, f"{tag}-b", cache=cache)
        except RuntimeError as exc:
            b.record(kind, self.name, "remount", run, "failed", None, {"error": str(exc)[-600:]}, None)
            return False
        try:
            try:
                names = list((mnt / "heads").iterdir())  # the listing is not what is measured here
            except OSError as exc:
                b.record(kind, self.name, "remount", run, "failed", None, {"error": repr(exc)}, proc.pid)
                return False
            extra = {"files": len(names), "mount_s": meta["mount_s"]}
            b.emu_post("/_emulator/reset")
            status, wall, more = b.timed(cmd, None, None, mnt)
            extra.update(more)
            r = b.record(kind, self.name, "remount", run, status, wall, extra, proc.pid)
        finally:
            b.stop_mount(proc, mnt, cache)
        return r.ok
