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


def test_daemon_exits_within_seconds_after_unmounting_a_busy_mount(tmp_path: Path) -> None:
    """Requests waiting for the API budget (listings of a dozen folders at 1fichier's real pacing)
    must not keep the daemon alive once its mount is gone (issue 12.5): pyfuse3.main() returns
    only when every handler has, so the daemon cancels them when the mount leaves the table."""
    import subprocess

    from tests.mount.conftest import PY, ROOT, run_mount

    seed = tmp_path / "seed"
    for i in range(12):
        (seed / f"d{i:02}").mkdir(parents=True)
        (seed / f"d{i:02}" / "x.txt").write_text(f"{i}\n")
    with run_emulator(tmp_path / "state", seed) as emu:
        mnt = tmp_path / "mnt"
        cache = str(tmp_path / "cache")
        with run_mount(emu, mnt, "--cache-dir", cache, "--budget-scale", "1", "--stall-limit", "300",
                       "--write-back-delay", "60") as m:
            (m.path / "new.txt").write_text("pending at unmount\n")  # journalled, not uploaded yet
            lsers = [subprocess.Popen(["ls", str(m.path / f"d{i:02}")], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL) for i in range(12)]
            try:
                time.sleep(1.5)
                assert sum(p.poll() is None for p in lsers) >= 6  # most listings wait for the budget
                t0 = time.monotonic()
                subprocess.run(["fusermount3", "-u", "-z", str(m.path)], check=True)
                m.proc.wait(60)
                took = time.monotonic() - t0
                print(f"\nbusy mount: the daemon exited {took:.1f} s after the unmount")
                assert took < 5, f"the daemon lingered {took:.1f} s after the unmount"
                assert m.proc.returncode == 0
            finally:
                for p in lsers:
                    p.kill()
                    p.wait(30)
        # the journal lock is free at once; `fichierfs umount` returns once the daemon has exited
        with run_mount(emu, mnt, "--cache-dir", cache) as m:
            assert (m.path / "new.txt").read_text() == "pending at unmount\n"  # kept in the journal
            wait_synced(m.path)
            res = subprocess.run([PY, "-m", "fichierfs", "umount", str(m.path)], capture_output=True, text=True,
                                 timeout=60, cwd=ROOT)
            assert res.returncode == 0, res.stderr
            assert m.proc.poll() is not None, "umount returned while the daemon was still running"
