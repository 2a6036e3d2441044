"""The shared harness and the benchmark's parts: the core never imports them; every workload file is found."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_core_never_imports_the_test_harness() -> None:
    for path in sorted((ROOT / "fichierfs").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            bad = [n for n in names if n.split(".")[0] in ("tests", "bench_kit", "scripts")]
            assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_every_workload_file_is_discovered() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from bench_kit.workloads import discover

        found = discover()
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    files = {p.stem for p in (ROOT / "scripts" / "bench_kit" / "workloads").glob("*.py") if not p.stem.startswith("_")}
    assert {w.__class__.__module__.rsplit(".", 1)[1] for w in found.values()} == files
    assert {"ls", "heads", "seqread", "randread", "copyin", "tar"} <= set(found)
    for w in found.values():
        assert w.labels, f"workload {w.name} has no phase label"
        assert set(w.full) == set(w.quick), f"workload {w.name}: FULL and QUICK parameters differ"


def test_metadata_workloads_are_default_and_render_beside_their_goals() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from bench_kit.common import Run
        from bench_kit.report import PHASE_LABEL, meta_section, section
        from bench_kit.workloads import discover

        found = discover()
        meta = {"remount_browse", "bigfolder", "rss_100k"}
        assert meta <= set(found)  # the default --workloads is every discovered workload
        for name in meta:
            assert found[name].table == "meta" and found[name].mounts == ("fichierfs",)
            assert not any(k[0] == name for k in PHASE_LABEL)  # not in the fichierfs vs rclone tables
        runs = [
            Run("fichierfs", "remount_browse", "cold", 1, "ok", 25.0,
                extra={"tree_cold_ls_s": 25.0, "tree_cold_listings": 1001}),
            Run("fichierfs", "remount_browse", "remount", 1, "ok", 1.4,
                extra={"tree_remount_ls_s": 1.4, "tree_remount_listings": 0, "tree_remount_live_s": 0.6}),
            Run("fichierfs", "bigfolder", "cold", 1, "ok", 3.0,
                extra={"big_files": 12000, "big_cold_shown": 11000, "big_cold_seconds": 3.0}),
            Run("fichierfs", "rss_100k", "remount", 1, "ok", 1.5,
                extra={"scale_remount_rss_VmRSS": 150 << 20, "scale_rss_per_entry_bytes": 1100,
                       "scale_remount_listings": 0, "scale_remount_live_s": 1.5}),
        ]
        findings: list[str] = []
        table = "\n".join(meta_section(runs, findings))
        assert not any("remount_browse" in line for line in section(runs, [], "main"))
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    assert "Metadata at account scale" in table
    assert "**0 listings**" in table and "0 listings, < 5 s: met" in table
    assert "11,000 of 12,000" in table and "not met" in table  # a folder not complete is a failed goal
    assert "1,100 B per entry" in table
    assert len(findings) == 1 and "12,000" in findings[0]
