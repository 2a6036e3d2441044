"""Upload batches through the real CLI, limits on (issue 12): call counts from the emulator's counters."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mount.conftest import run_emulator
from tests.mount.test_write import Env, sh, tree_sums, wait_synced

UPLOAD_SIDE = ("upload/get_upload_server", "upload.cgi", "end.pl")


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    with run_emulator(tmp_path / "state", None) as emu:
        yield Env(tmp_path, emu)


def real_files(dest: Path, folders: int, per_folder: int) -> Path:
    """``folders`` × ``per_folder`` real files of this machine (Python's own library sources)."""
    import sysconfig

    lib = Path(sysconfig.get_paths()["stdlib"])
    picked = [p for p in sorted(lib.rglob("*.py")) if p.is_file() and 0 < p.stat().st_size < 200_000]
    assert len(picked) >= folders * per_folder
    for i, p in enumerate(picked[: folders * per_folder]):
        d = dest / f"d{i // per_folder}"
        d.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, d / f"{i:04d}-{p.name}")
    return dest


def test_cp_600_real_files_into_3_folders_costs_at_most_12_upload_calls(env: Env, tmp_path: Path) -> None:
    src = real_files(tmp_path / "src", 3, 200)
    want = tree_sums(src)
    with env.mount() as m:
        before = env.emu.stats()["calls"]
        t0 = time.monotonic()
        sh(f"cp -r {src}/d0 {src}/d1 {src}/d2 {m.path}/")
        doc = wait_synced(m.path)
        took = time.monotonic() - t0
        assert doc["writeback"]["failed"] == 0
        after = env.emu.stats()["calls"]
        upload_calls = sum(after.get(k, 0) - before.get(k, 0) for k in UPLOAD_SIDE)
        print(f"\n600 files in 3 folders: {upload_calls} upload-side calls "
              f"({ {k: after.get(k, 0) - before.get(k, 0) for k in UPLOAD_SIDE} }), {took:.1f} s until synced")
        assert upload_calls <= 12
    with env.mount() as m:
        assert tree_sums(m.path) == want  # identical after a remount
    assert env.emu.stats()["flood_locks"] == 0
