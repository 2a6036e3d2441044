"""Over quota and df (issue 12.6, issue 11.5 core side) over the in-process emulator, 1 MiB quota."""

from __future__ import annotations

import errno
import os

import pytest
import trio

from fichierfs.control import Backlog
from fichierfs.errors import FichierError
from fichierfs.meta import ROOT_INODE
from tests.core.write_rig import Rig, names, sync, write_file

QUOTA = 1 << 20


@pytest.fixture
def emu_config():
    from fichierfs.emulator import EmulatorConfig

    return EmulatorConfig(quota=QUOTA)


@pytest.fixture
def autojump_clock(write_clock):  # noqa: ANN001 - see tests/core/conftest.py
    return write_clock


def _used(st) -> int:  # noqa: ANN001
    return (st.blocks - st.bfree) * st.bsize


async def test_df_counts_writes_at_once_and_enospc_when_known_full(rig: Rig, emu, autojump_clock) -> None:
    async with rig.mount() as fs:
        assert _used(await fs.statfs()) == 0
        await write_file(fs, ROOT_INODE, "a.bin", os.urandom(300_000))
        assert _used(await fs.statfs()) >= 300_000 - 4096  # staged bytes count at once
        await sync(fs)
        assert 300_000 - 4096 <= _used(await fs.statfs()) <= 300_000 + 4096  # uploaded since user/info
        assert emu.stats()["calls"]["user/info"] == 1  # no new user/info (1 per 5 min, §4)
        fh, attr = await fs.create(ROOT_INODE, "big.bin", 0o644, os.O_WRONLY | os.O_CREAT)
        with pytest.raises(FichierError) as exc:
            fs.write(fh, 0, b"x" * 800_000)  # more than the known free space
        assert exc.value.errno == errno.ENOSPC
        fs.release(fh)
        await fs.unlink(ROOT_INODE, "big.bin")
        await fs.unlink(ROOT_INODE, "a.bin")
        await sync(fs)
        assert _used(await fs.statfs()) <= 4096  # deleted since
    assert emu.list_files(0) == []


async def test_over_quota_stops_sync_names_files_and_resumes_when_space_is_freed(rig: Rig, emu,
                                                                                 autojump_clock) -> None:
    emu.put_file(0, "old1.bin", os.urandom(400_000))  # seeded files count against the quota
    emu.put_file(0, "old2.bin", os.urandom(400_000))
    async with rig.mount() as fs:
        fs.writer.retry_max = 300.0  # the product's back-off: only the freed space can end the wait early
        for n in ("n1.bin", "n2.bin"):
            await write_file(fs, ROOT_INODE, n, os.urandom(200_000))
        await trio.sleep(10)
        b = Backlog.of(fs.status())
        assert b.blocked is not None and "full" in b.blocked  # sync stops at once, says why
        assert sorted(b.blocked_files) == ["n1.bin", "n2.bin"]
        posts = emu.stats()["calls"]["upload.cgi"]
        await trio.sleep(60)
        assert emu.stats()["calls"]["upload.cgi"] == posts  # not re-sending every few seconds
        fh, _ = await fs.create(ROOT_INODE, "more.bin", 0o644, os.O_WRONLY | os.O_CREAT)
        with pytest.raises(FichierError) as exc:
            fs.write(fh, 0, b"y" * 1000)
        assert exc.value.errno == errno.ENOSPC
        fs.release(fh)
        await fs.unlink(ROOT_INODE, "more.bin")
        await fs.unlink(ROOT_INODE, "old1.bin")  # space freed by this mount: retried at once
        with trio.fail_after(30):  # not the 300 s back-off
            await sync(fs)
        assert Backlog.of(fs.status()).blocked is None
        assert await names(fs) == ["n1.bin", "n2.bin", "old2.bin"]
    assert sorted(f["filename"] for f in emu.list_files(0)) == ["n1.bin", "n2.bin", "old2.bin"]


async def test_retry_now_after_space_is_freed_elsewhere(rig: Rig, emu, autojump_clock) -> None:
    """Space freed outside this mount (web UI, a bigger plan): ``fichierfs sync --retry-now``."""
    emu.put_file(0, "old.bin", os.urandom(900_000))
    async with rig.mount() as fs:
        await write_file(fs, ROOT_INODE, "n.bin", os.urandom(200_000))
        await trio.sleep(10)
        assert Backlog.of(fs.status()).blocked
        emu.set_quota(QUOTA * 4)
        fs.setxattr(ROOT_INODE, "user.fichierfs.control", b"retry-now")
        assert Backlog.of(fs.status()).blocked is None
        with trio.fail_after(20):  # not the 300 s back-off
            await sync(fs)
    assert sorted(f["filename"] for f in emu.list_files(0)) == ["n.bin", "old.bin"]


async def test_df_shows_no_space_while_the_account_is_known_full(rig: Rig, emu, autojump_clock) -> None:
    """The account filled elsewhere after user/info: the refused upload makes writes ENOSPC, and df must say
    so too (not the free space of the last user/info, which may be asked once per 5 min, §4)."""
    async with rig.mount() as fs:
        await fs.statfs()
        emu.set_quota(100_000)
        await write_file(fs, ROOT_INODE, "n.bin", os.urandom(200_000))
        await trio.sleep(10)
        assert Backlog.of(fs.status()).blocked
        st = await fs.statfs()
        assert st.bfree == 0 and st.blocks > 0
        assert emu.stats()["calls"]["user/info"] == 1
        emu.set_quota(QUOTA)
        fs.setxattr(ROOT_INODE, "user.fichierfs.control", b"retry-now")
        assert (await fs.statfs()).bfree > 0
        with trio.fail_after(20):
            await sync(fs)
