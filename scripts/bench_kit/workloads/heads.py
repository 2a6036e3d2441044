"""Head storm: a file manager lists a folder of photos and reads the first 64 KiB of each, cold then warm."""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench_kit.common import KiB, MiB, Phase, Sizes, Workload, human_bytes, rand_file

if TYPE_CHECKING:
    from bench_kit.runner import Bench

HEAD = 64 * KiB


class Heads(Workload):
    name = "heads"
    order = 20
    labels = {"cold": "head storm (64 KiB of each file), cold", "warm": "head storm, again (warm)"}
    reference = True
    full = {"heads_files": 50, "heads_size": (1 * MiB, 3 * MiB)}
    quick = {"heads_files": 12, "heads_size": (256 * KiB, 512 * KiB)}

    def build(self, b: Bench) -> None:
        rng = random.Random(20240608)
        heads: dict[str, str] = {}
        lo, hi = b.sz.heads_size
        for i in range(b.sz.heads_files):
            name = f"photo{i:04d}.jpg"
            p = b.seed / "heads" / name
            rand_file(p, rng.randint(lo, hi), rng)
            with open(p, "rb") as f:
                heads[name] = hashlib.sha256(f.read(HEAD)).hexdigest()
        (b.work / "heads.json").write_text(json.dumps(heads))

    def describe(self, info: dict[str, Any], sz: Sizes) -> str:
        lo, hi = sz.heads_size
        return f"head storm = {sz.heads_files} files of {human_bytes(lo)}–{human_bytes(hi)}, first 64 KiB of each"

    def phases(self, b: Bench, mnt: Path, meta: dict[str, Any], tag: str) -> list[Phase]:
        cmd = self.worker_cmd(str(mnt / "heads"), str(b.work / "heads.json"))
        return [Phase("cold", cmd), Phase("warm", cmd)]

    def worker(self, args: list[str]) -> int:
        folder, expected_file = args
        expected = json.loads(Path(expected_file).read_text())
        names = sorted(os.listdir(folder))  # a file manager lists the folder first
        bad, nbytes = [], 0
        for name in names:
            with open(os.path.join(folder, name), "rb") as f:
                data = f.read(HEAD)
            nbytes += len(data)
            if hashlib.sha256(data).hexdigest() != expected.get(name):
                bad.append(name)
        print(json.dumps({"files": len(names), "bytes": nbytes, "bad": bad}))
        return 1 if bad or len(names) != len(expected) else 0
