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
