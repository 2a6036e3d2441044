"""Folders over the listing cap (bigfolder.py), over the in-process emulator with a cap of 50
(the same code path as 1fichier's 5,000, §2.2/§2.3, at 1/100 of the size), limits ON."""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from fichierfs.emulator import EmulatorConfig
from fichierfs.meta import ROOT_INODE, Incomplete, MetaCache, NoEntry
from fichierfs.scheduler import Budgets, Scheduler

CAP = 50


@pytest.fixture
def emu_config() -> EmulatorConfig:
    return EmulatorConfig(max_listing=CAP)


@asynccontextmanager
async def _stalling_meta(client) -> AsyncIterator[MetaCache]:  # noqa: ANN001
    """A capped MetaCache over its own scheduler whose stall limit is 5 s (EAGAIN comes quickly)."""
    s = Scheduler(client, Budgets(stall_limit=5.0))
    async with trio.open_nursery() as n:
        await n.start(s.run)
        meta = MetaCache(s, 0)
        meta.listing_cap = CAP
        meta.attach_nursery(n)
        yield meta
        s.stop()
        n.cancel_scope.cancel()


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


async def test_lookup_of_unseen_name_at_the_real_limits_asks_by_name_never_eagain(emu, sched, autojump_clock) -> None:
    """The product's budgets (31 s per listing of a folder, stall limit 30 s: MockClock, real
    time): completing 4 caps' worth takes 4 windows (> 2 min), yet a lookup of a name not
    shown yet is answered within seconds by ONE file/info by name (§2.4) — the file, or ENOENT
    from 1fichier itself — never EAGAIN; the inode it gets is the one the complete listing keeps."""
    d = emu.make_folder(0, "big")
    _fill(emu, d, 4 * CAP)
    meta = MetaCache(sched, 0)
    meta.listing_cap = CAP
    async with trio.open_nursery() as n:
        meta.attach_nursery(n)
        big = await meta.lookup(ROOT_INODE, "big")
        await meta.ensure_listed(big.ino)
        assert len(list(meta.children(big.ino))) == CAP  # what is known is served at once
        assert not meta.negative_ok(big.ino)
        [state] = meta.statistics()["incomplete"]
        assert (state["path"], state["known"], state["at_least"]) == ("/big", CAP, CAP)
        emu.reset_stats()
        t0 = trio.current_time()
        last = await meta.lookup(big.ino, f"p{4 * CAP - 1:05}.jpg")  # not in the first reply
        assert last.size == (4 * CAP - 1) % 13 + 1
        with pytest.raises(NoEntry):
            await meta.lookup(big.ino, "really-missing.jpg")  # 1fichier's own #469
        with pytest.raises(NoEntry):
            await meta.lookup(big.ino, "really-missing.jpg")  # remembered: no second call
        assert trio.current_time() - t0 < 5  # no wait for a 31 s window, far from the 30 s stall limit
        assert emu.stats()["calls"].get("file/info") == 2
        assert big.ino in meta._incomplete  # the windows are still running
        while big.ino in meta._incomplete:
            await trio.sleep(5)
        assert trio.current_time() - t0 > 60  # completing really took windows 31 s apart (§4)
        assert meta.statistics()["incomplete"] == []
        assert len(list(meta.children(big.ino))) == 4 * CAP
        assert meta.get_nowait(big.ino, f"p{4 * CAP - 1:05}.jpg") is last  # same node, same inode
        calls = emu.stats()["calls"].get("file/info")
        with pytest.raises(NoEntry):
            await meta.lookup(big.ino, "really-missing.jpg")  # complete: the listing answers
        assert emu.stats()["calls"].get("file/info") == calls
        assert emu.stats()["flood_locks"] == 0
        n.cancel_scope.cancel()


async def test_lookup_waits_then_eagain_only_when_the_name_cannot_be_asked(emu, client, autojump_clock) -> None:
    """Sub-folders cut by the cap too: file/info cannot tell a missing sub-folder, so the lookup
    waits for the completion and gets EAGAIN after the stall limit (never ENOENT). The folder's
    files are completed although its folder/ls reply held sub-folders only."""
    d = emu.make_folder(0, "huge")
    for i in range(CAP):
        emu.make_folder(d, f"sub{i:03}")
    _fill(emu, d, 8 * CAP)
    async with _stalling_meta(client) as meta:
        huge = await meta.lookup(ROOT_INODE, "huge")
        await meta.ensure_listed(huge.ino)
        emu.reset_stats()
        with pytest.raises(Incomplete) as e:
            await meta.lookup(huge.ino, f"p{8 * CAP - 1:05}.jpg")
        assert e.value.errno == errno.EAGAIN
        assert emu.stats()["calls"].get("file/info", 0) == 0
        while huge.ino in meta._incomplete:  # a reply holding only sub-folders is completed too
            await trio.sleep(5)
        kids = list(meta.children(huge.ino))
        assert (sum(c.is_dir for c in kids), sum(not c.is_dir for c in kids)) == (CAP, 8 * CAP)


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


async def test_create_in_incomplete_folder_never_makes_a_silent_duplicate(emu, rig, write_clock, caplog) -> None:
    """Real limits: a create of a name the folder holds beyond the first reply is EEXIST at once
    (file/info by name), a new name is created; the user is told the folder is incomplete (a
    WARNING naming it, the status document and `fichierfs status`)."""
    import logging
    import os

    from fichierfs.control import render_status
    from fichierfs.errors import FsError

    d = emu.make_folder(0, "big")
    _fill(emu, d, 6 * CAP)
    async with rig.mount() as fs:
        fs.meta.listing_cap = CAP
        big = await fs.lookup(ROOT_INODE, "big")
        with caplog.at_level(logging.WARNING, logger="fichierfs.meta"):
            await fs.opendir(big.ino)  # first reply: 50 of 300 shown, the rest being completed
        assert any("/big holds 50 entries or more" in r.getMessage() and r.levelno == logging.WARNING
                   for r in caplog.records)
        doc = fs.status()
        assert [f["path"] for f in doc["meta"]["incomplete"]] == ["/big"]
        from rich.console import Console

        console = Console(width=140, record=True)
        console.print(render_status(doc))
        text = console.export_text()
        assert "1 folder(s) still being listed" in text and "/big" in text
        unseen = f"p{6 * CAP - 1:05}.jpg"
        t0 = trio.current_time()
        with pytest.raises(FsError) as e:
            await fs.create(big.ino, unseen, 0o644, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        assert e.value.errno == errno.EEXIST  # not a new file next to the existing one
        fh, _ = await fs.create(big.ino, "brand-new.jpg", 0o644, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        fs.release(fh)
        assert trio.current_time() - t0 < 5
        await trio.sleep(400)  # completion: 6 more listings of the folder, 31 s apart (§4)
        assert fs.status()["meta"]["incomplete"] == []
        assert len(list(fs.meta.children(big.ino))) == 6 * CAP + 1
    assert sum(1 for f in emu.list_files(d) if f["filename"] == unseen) == 1


async def test_a_whole_relist_after_a_failed_completion_answers_lookups_alone(emu, sched, autojump_clock) -> None:
    """A completion that failed, then a re-list under the cap: the listing is whole again, so a
    missing name is ENOENT from it, with no file/info by name."""
    d = emu.make_folder(0, "big")
    _fill(emu, d, 2 * CAP)
    emu.inject("file/ls", "5xx", count=1000)
    meta = MetaCache(sched, 0, dir_ttl=60)
    meta.listing_cap = CAP
    big = await meta.lookup(ROOT_INODE, "big")
    await meta.ensure_listed(big.ino)  # inline completion (no nursery): its windows fail
    assert big.ino in meta._complete_failed
    assert meta.statistics()["incomplete"] == [{"path": "/big", "known": CAP, "failed": True, "at_least": CAP}]
    for f in emu.list_files(d)[CAP // 2:]:
        emu.remove_file(f["url"])
    await trio.sleep(61)
    await meta.refresh(big.ino)
    assert len(list(meta.children(big.ino))) == CAP // 2
    assert meta.statistics()["incomplete"] == []
    emu.reset_stats()
    with pytest.raises(NoEntry):
        await meta.lookup(big.ino, "missing.jpg")
    assert emu.stats()["calls"].get("file/info", 0) == 0


async def test_a_duplicate_name_not_seen_yet_waits_never_enoent(emu, client, autojump_clock) -> None:
    """``name (dup id)`` is meta's name for a duplicate, unknown to 1fichier: file/info by name
    cannot answer it, so its lookup waits for the folder (EAGAIN after the stall limit), then finds it."""
    d = emu.make_folder(0, "big")
    _fill(emu, d, 2 * CAP)
    older = emu.put_file(d, "same.jpg", b"old", date=1_700_000_000.0)
    emu.put_file(d, "same.jpg", b"newer", date=1_700_000_100.0)
    dup = f"same (dup {older.rsplit('?', 1)[-1]}).jpg"
    async with _stalling_meta(client) as meta:
        big = await meta.lookup(ROOT_INODE, "big")
        await meta.ensure_listed(big.ino)
        emu.reset_stats()
        with pytest.raises(Incomplete):
            await meta.lookup(big.ino, dup)
        assert emu.stats()["calls"].get("file/info", 0) == 0
        while big.ino in meta._incomplete:
            await trio.sleep(5)
        assert (await meta.lookup(big.ino, dup)).size == 3
        assert (await meta.lookup(big.ino, "same.jpg")).size == 5


async def test_lookups_by_name_never_starve_the_folders_windows(emu, sched, autojump_clock) -> None:
    """`cp -r` of many new files into a folder being completed: each create asks one name, one
    after the other, at the real budgets; the folder's date windows still run at their own pace
    (31 s apart), so the names stop costing a call once it is complete."""
    d = emu.make_folder(0, "big")
    _fill(emu, d, 4 * CAP)
    meta = MetaCache(sched, 0)
    meta.listing_cap = CAP
    done_at: list[float] = []
    async with trio.open_nursery() as n:
        meta.attach_nursery(n)
        big = await meta.lookup(ROOT_INODE, "big")
        t0 = trio.current_time()
        await meta.ensure_listed(big.ino)
        for i in range(600):  # 300 s of back-to-back file/info calls if every one asked
            with pytest.raises(NoEntry):
                await meta.lookup(big.ino, f"new{i:04}.jpg")
            if big.ino not in meta._incomplete and not done_at:
                done_at.append(trio.current_time() - t0)
        # 5 windows 31 s apart, as without lookups (159 s), not held back until the lookups stop
        assert done_at and done_at[0] < 5 * 31 + 30
        assert emu.stats()["calls"].get("file/info", 0) < 450  # once complete, the listing answers
        n.cancel_scope.cancel()
