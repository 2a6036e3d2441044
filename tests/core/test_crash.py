"""kill -9 at every step of an overwrite, then remount: exactly one correct copy (issue 5 item 2).

The crash is modelled in-process: the writer's test hook raises a BaseException at the named
step, which tears the whole "mount" down like a kill (nothing after the hook runs; the SQLite
journal keeps exactly what was committed). A new mount over the same cache dir and the same
emulator state replays the journal.
"""

from __future__ import annotations

import os

import pytest
import whirlpool

from fichierfs import crashpoint
from fichierfs.meta import ROOT_INODE
from tests.core.write_rig import Crash, Rig, killed, names, read_all, sync, write_file


@pytest.fixture
def autojump_clock(write_clock):  # noqa: ANN001 - see tests/core/conftest.py
    return write_clock


def _wp(data: bytes) -> str:
    return whirlpool.new(data).hexdigest().lower()


@pytest.mark.parametrize("forget_end_pl", [False, True], ids=["end.pl-kept", "end.pl-gone"])
@pytest.mark.parametrize("step", ["before_post", "after_post", "after_end", "before_delete_old"])
async def test_kill_at_each_step_then_remount(
    rig: Rig, emu, autojump_clock, monkeypatch: pytest.MonkeyPatch, step: str, forget_end_pl: bool
) -> None:
    old = b"old content\n" * 1000
    new = os.urandom(200_000)
    async with rig.mount() as fs:
        await write_file(fs, ROOT_INODE, "f.bin", old)
        await sync(fs)

    def crash_at(name: str) -> None:
        if name == step:
            raise Crash(name)

    monkeypatch.setattr(crashpoint, "hit", crash_at)
    with killed():
        async with rig.mount() as fs:
            await write_file(fs, ROOT_INODE, "f.bin", new)
            await sync(fs)
    monkeypatch.setattr(crashpoint, "hit", lambda name: None)
    if forget_end_pl:
        emu._uploads.clear()  # the upload result expired (2 h, §6.4): only the listing can tell
    emu.reset_stats()
    async with rig.mount() as fs:
        assert await names(fs) == ["f.bin"]  # visible at once after the remount
        await sync(fs)
        node = await fs.lookup(ROOT_INODE, "f.bin")
        assert await read_all(fs, node.ino) == new
        assert fs.status()["writeback"]["pending"] == 0
    files = emu.list_files(0)
    assert [(f["filename"], f["whirlpool"]) for f in files] == [("f.bin", _wp(new))]
    calls = emu.stats()["calls"]
    if step in ("after_post", "after_end", "before_delete_old"):
        assert calls["upload.cgi"] == 0  # never uploaded again after a POST landed (§8.7)


async def test_kill_with_pending_folder_and_rename(rig: Rig, emu, autojump_clock) -> None:
    """Journal replay of local folders, pending files inside them and a pending rename."""
    emu.put_file(0, "keep.txt", b"k")
    with killed():
        async with rig.mount(run_writer=False) as fs:
            d = await fs.mkdir(ROOT_INODE, "d", 0o755)
            e = await fs.mkdir(d.ino, "e", 0o700)
            await write_file(fs, e.ino, "x", b"x" * 10)
            await fs.rename(ROOT_INODE, "keep.txt", d.ino, "kept.txt")
            raise Crash("kill -9")
    async with rig.mount() as fs:
        assert await names(fs) == ["d"]
        d = await fs.lookup(ROOT_INODE, "d")
        assert await names(fs, d.ino) == ["e", "kept.txt"]
        e = await fs.lookup(d.ino, "e")
        assert e.mode & 0o777 == 0o700
        await sync(fs)
        assert await names(fs, d.ino) == ["e", "kept.txt"]
    d_id = emu.list_folders(0)[0]["id"]
    e_id = emu.list_folders(d_id)[0]["id"]
    assert [f["filename"] for f in emu.list_files(d_id)] == ["kept.txt"]
    assert [f["filename"] for f in emu.list_files(e_id)] == ["x"]
    assert emu.list_files(0) == []
