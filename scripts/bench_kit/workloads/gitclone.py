"""`git clone` of a real ~250-file repository into the mount at 1fichier's REAL limits, until `fichierfs sync` returns."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench_kit.common import Phase, Sizes, Workload
from bench_kit.workloads._git import clone, clone_worker, git_repo, tree_counts

if TYPE_CHECKING:
    from bench_kit.runner import Bench


class GitClone(Workload):
    """git keeps the pack it receives (what `git clone` does): the working tree + a small `.git`.

    Runs with the emulator at time scale 1 (the real limits: 3 calls/s, a folder listed once per 30 s,
    a 60 s flood lock) whatever the run's scale, and fichierfs with its defaults. fichierfs only: the
    time is until `fichierfs sync` returns (rclone's upload queue has no such end at these limits).
    """

    name = "gitclone"
    order = 55
    labels = {"cold": "`git clone` (~250 files, pack kept) at the REAL limits, until `fichierfs sync` returns"}
    mounts = ("fichierfs",)
    time_scale = 1.0
    timeout = 480.0  # at the real limits: the loose clone's ~380 metered calls alone take ~2 min (3 calls/s)
    loose = False
    full = {"git_files": 250}
    quick = {"git_files": 30}

    def build(self, b: Bench) -> None:
        repo = b.work / "git-repo"
        if not repo.exists():
            git_repo(repo, b.sz.git_files)
        with tempfile.TemporaryDirectory() as tmp:  # what the clone writes, counted on local disk
            clone(repo, Path(tmp) / "clone", loose=self.loose)
            folders, files = tree_counts(Path(tmp) / "clone")
        b.info[f"{self.name}_folders"], b.info[f"{self.name}_files"] = folders, files
        b.info["git_version"] = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()

    def describe(self, info: dict[str, Any], sz: Sizes) -> str:
        return (f"{self.name} = a repository of {sz.git_files} real files (Python's library, 25 per folder, one "
                f"commit) cloned with `git clone --no-local`{', its pack unpacked into loose objects' if self.loose else ''}"
                f" ({info.get('git_version')}): {info.get(f'{self.name}_files')} files in "
                f"{info.get(f'{self.name}_folders')} folders, emulator at time scale 1 (real limits)")

    def phases(self, b: Bench, mnt: Path, meta: dict[str, Any], tag: str) -> list[Phase]:
        counts = f"{b.info[f'{self.name}_folders']},{b.info[f'{self.name}_files']}"
        return [Phase("cold", self.worker_cmd(str(b.work / "git-repo"), str(mnt / f"git-{tag}"), meta["flush"],
                                              counts))]

    def worker(self, args: list[str]) -> int:
        return clone_worker(args, loose=self.loose)

    def cell(self, d: dict[str, Any]) -> str:
        folders, metered = d.get("folders"), d.get("api_calls")
        if not folders or metered is None:
            return ""
        return f"; {metered:g} metered calls, {metered / folders:.2f} per folder touched ({folders:g} folders)"
