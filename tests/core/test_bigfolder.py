"""Folders over the listing cap (bigfolder.py), over the in-process emulator with a cap of 50
(the same code path as 1fichier's 5,000, §2.2/§2.3, at 1/100 of the size), limits ON."""

from __future__ import annotations

import errno

import pytest
import trio

from fichierfs.emulator import EmulatorConfig
from fichierfs.meta import ROOT_INODE, Incomplete, MetaCache, NoEntry
from fichierfs.scheduler import Budgets, Scheduler

CAP = 50


@pytest.fixture
def emu_config() -> EmulatorConfig:
    return EmulatorConfig(max_listing=CAP)


def _fill(emu, folder: int, n: int, start: float = 1_600_000_000.0, step: float = 7.0) -> None:
    for i in range(n):
        emu.put_file(folder, f"p{i:05}.jpg", b"x" * (i % 13 + 1), date=start + i * step)


@pytest.mark.parametrize("n", [CAP - 1, CAP, CAP + 1, 3 * CAP + 17, 12 * CAP])
async def test_capped_folder_is_completed_with_windows(emu, sched, autojump_clock, n: int) -> None:
    d = emu.make_folder(0, "photos")
    _fill(emu, d, n)
    meta = MetaCache(sched, 0)
    meta.listing_cap = CAP
    node = await meta.lookup(ROOT_INODE, "photos")
    await meta.ensure_listed(node.ino)
    names = {c.name: c.size for c in meta.children(node.ino)}
    assert len(names) == n
    assert all(names[f"p{i:05}.jpg"] == i % 13 + 1 for i in range(n))
    calls = emu.stats()["calls"]
    print(f"\n{n} files: folder/ls {calls.get('folder/ls')} file/ls {calls.get('file/ls', 0)}")
    if n < CAP:
        assert calls.get("file/ls", 0) == 0
    else:
        assert calls.get("file/ls", 0) <= 2 * (n // CAP) + 3  # ~2 windows per cap's worth, oldest-first
    assert emu.stats()["flood_locks"] == 0


@pytest.mark.parametrize("emu_config", [EmulatorConfig(max_listing=CAP, date_filter_inclusive=True),
                                        EmulatorConfig(max_listing=CAP)], ids=["inclusive", "strict"])
async def test_same_second_uploads_and_either_bound_semantics(emu, sched, autojump_clock) -> None:
    d = emu.make_folder(0, "burst")
    for i in range(3 * CAP):  # 3 files per second: many share a second, across window bounds
        emu.put_file(d, f"b{i:04}", b"z", date=1_700_000_000.0 + i // 3)
    meta = MetaCache(sched, 0)
    meta.listing_cap = CAP
    node = await meta.lookup(ROOT_INODE, "burst")
    await meta.ensure_listed(node.ino)
    assert len(list(meta.children(node.ino))) == 3 * CAP


async def test_lookup_of_unseen_name_waits_for_completion_never_enoent(emu, client, autojump_clock) -> None:
    d = emu.make_folder(0, "big")
    _fill(emu, d, 4 * CAP)
    sched = Scheduler(client, Budgets(stall_limit=300.0))  # 5 listings of one folder: 4 × 31 s (§4)
    meta = MetaCache(sched, 0)
    meta.listing_cap = CAP
    async with trio.open_nursery() as n:
        await n.start(sched.run)
        meta.attach_nursery(n)
        big = await meta.lookup(ROOT_INODE, "big")
        await meta.ensure_listed(big.ino)
        shown = len(list(meta.children(big.ino)))
        assert shown == CAP  # what is known is served at once
        assert not meta.negative_ok(big.ino)
        t0 = trio.current_time()
        last = await meta.lookup(big.ino, f"p{4 * CAP - 1:05}.jpg")  # not in the first reply: waits
        assert last.size == (4 * CAP - 1) % 13 + 1
        assert trio.current_time() - t0 > 30  # it did wait for windows (31 s per folder listing, §4)
        with pytest.raises(NoEntry):
            await meta.lookup(big.ino, "really-missing.jpg")  # complete now: a true ENOENT
        assert len(list(meta.children(big.ino))) == 4 * CAP
        sched.stop()
        n.cancel_scope.cancel()


async def test_lookup_gives_eagain_after_stall_limit(emu, client, autojump_clock) -> None:
    d = emu.make_folder(0, "huge")
    _fill(emu, d, 8 * CAP)
    s = Scheduler(client, Budgets(stall_limit=5.0))
    async with trio.open_nursery() as n:
        await n.start(s.run)
        meta = MetaCache(s, 0)
        meta.listing_cap = CAP
        meta.attach_nursery(n)
        huge = await meta.lookup(ROOT_INODE, "huge")
        await meta.ensure_listed(huge.ino)
        with pytest.raises(Incomplete) as e:
            await meta.lookup(huge.ino, f"p{8 * CAP - 1:05}.jpg")
        assert e.value.errno == errno.EAGAIN
        s.stop()
        n.cancel_scope.cancel()


async def test_relist_of_complete_big_folder_keeps_serving_old_listing(emu, sched, autojump_clock) -> None:
    d = emu.make_folder(0, "big")
    _fill(emu, d, 2 * CAP)
    meta = MetaCache(sched, 0, dir_ttl=60)
    meta.listing_cap = CAP
    big = await meta.lookup(ROOT_INODE, "big")
    await meta.ensure_listed(big.ino)
    assert len(list(meta.children(big.ino))) == 2 * CAP
    emu.put_file(d, "new.jpg", b"n", date=1_800_000_000.0)
    await trio.sleep(61)
    await meta.refresh(big.ino)  # inline completion (no nursery)
    assert len(list(meta.children(big.ino))) == 2 * CAP + 1
    assert not any(n.gone for n in meta.children(big.ino))


async def test_create_in_incomplete_folder_never_makes_a_silent_duplicate(emu, rig, write_clock) -> None:
    import os

    d = emu.make_folder(0, "big")
    _fill(emu, d, 6 * CAP)
    async with rig.mount(budgets=Budgets(stall_limit=5.0)) as fs:
        fs.meta.listing_cap = CAP
        big = await fs.lookup(ROOT_INODE, "big")
        await fs.opendir(big.ino)  # first reply: 50 of 300 shown, the rest being completed
        unseen = f"p{6 * CAP - 1:05}.jpg"
        with pytest.raises(Incomplete):  # not ENOENT → no new file next to the existing one
            await fs.create(big.ino, unseen, 0o644, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        await trio.sleep(400)  # completion: 6 more listings of the folder, 31 s apart (§4)
        with pytest.raises(OSError) as e:
            try:
                await fs.create(big.ino, unseen, 0o644, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            except Exception as exc:  # FsError(EEXIST)
                raise OSError(getattr(exc, "errno", 0), str(exc)) from None
        assert e.value.errno == errno.EEXIST
    assert sum(1 for f in emu.list_files(d) if f["filename"] == unseen) == 1
