"""MetaCache over scheduler + client + in-process emulator (limits ON, mock clock)."""

from __future__ import annotations

import pytest
import trio

from fichierfs.meta import ROOT_INODE, MetaCache, NoEntry, RecordingNotifier
from fichierfs.names import encode
from tests.core.conftest import listings


async def test_lookup_and_getattr_come_from_one_listing(emu, sched, autojump_clock) -> None:
    d = emu.make_folder(0, "docs")
    for i in range(30):
        emu.put_file(d, f"f{i:02}.txt", b"x" * i + b"!")
    notifier = RecordingNotifier()
    meta = MetaCache(sched, 0, notifier=notifier)
    docs = await meta.lookup(ROOT_INODE, "docs")
    assert docs.is_dir and docs.folder_id == d
    for i in range(30):
        node = await meta.lookup(docs.ino, f"f{i:02}.txt")
        assert node.size == i + 1 and not node.is_dir
    with pytest.raises(NoEntry):
        await meta.lookup(docs.ino, "missing")  # negative: from the fresh listing
    assert listings(emu) == 2  # root + docs, nothing per file
    assert emu.stats()["calls"].get("file/info", 0) == 0
    assert emu.stats()["flood_locks"] == 0


async def test_inodes_stable_and_changes_invalidate(emu, sched, autojump_clock) -> None:
    url_a = emu.put_file(0, "a.txt", b"aaa")
    emu.put_file(0, "b.txt", b"bbb")
    notifier = RecordingNotifier()
    meta = MetaCache(sched, 0, dir_ttl=60, notifier=notifier)
    a1 = await meta.lookup(ROOT_INODE, "a.txt")
    b1 = await meta.lookup(ROOT_INODE, "b.txt")
    meta.remember(b1.ino)
    emu.remove_file(meta.get(b1.ino).file.url)
    emu.put_file(0, "c.txt", b"ccc")
    await trio.sleep(61)
    await meta.refresh(ROOT_INODE)
    assert (await meta.lookup(ROOT_INODE, "a.txt")).ino == a1.ino  # same url → same inode
    assert meta.get(a1.ino).file.url == url_a
    with pytest.raises(NoEntry):
        await meta.lookup(ROOT_INODE, "b.txt")
    assert ("entry", ROOT_INODE, "b.txt") in notifier.events
    assert meta.get(b1.ino).gone  # kept until the kernel forgets it
    meta.forget(b1.ino, 1)
    with pytest.raises(NoEntry):
        meta.get(b1.ino)
    assert (await meta.lookup(ROOT_INODE, "c.txt")).size == 3


async def test_stale_listing_served_while_refreshed_in_background(emu, sched, autojump_clock) -> None:
    emu.put_file(0, "old.txt", b"1")
    meta = MetaCache(sched, 0, dir_ttl=10)
    async with trio.open_nursery() as n:
        meta.attach_nursery(n)
        await meta.ensure_listed(ROOT_INODE)
        emu.put_file(0, "new.txt", b"2")
        await trio.sleep(11)
        before = listings(emu)
        node = await meta.ensure_listed(ROOT_INODE)  # stale: returns at once
        assert "new.txt" not in node.children and listings(emu) == before
        await trio.sleep(40)  # the background re-list happens within the per-folder budget
        assert "new.txt" in meta.get(ROOT_INODE).children
        assert listings(emu) == before + 1


async def test_duplicates_and_encoded_names(emu, sched, autojump_clock) -> None:
    first = emu.put_file(0, "dup.txt", b"first")
    second = emu.put_file(0, "dup.txt", b"second!")
    emu.put_file(0, encode('we<ird> "name"'), b"w")
    emu.make_folder(0, "same")
    emu.put_file(0, "same", b"file named like a folder")
    meta = MetaCache(sched, 0)
    await meta.ensure_listed(ROOT_INODE)
    names = sorted(meta.get(ROOT_INODE).children)
    shown = (await meta.lookup(ROOT_INODE, "dup.txt")).file
    other = meta.get(meta.node_for_url(first if shown.url == second else second).ino).file
    assert (shown.date, shown.url) > (other.date, other.url)  # the newest (then the larger url) keeps the name
    assert any(n.startswith("dup (dup ") and n.endswith(").txt") for n in names)
    assert 'we<ird> "name"' in names
    assert (await meta.lookup(ROOT_INODE, "same")).is_dir
    assert any(n.startswith("same (dup ") for n in names)
    # deterministic: a second cache over the same listing gives the same names
    meta2 = MetaCache(sched, 0)
    await trio.sleep(35)
    await meta2.ensure_listed(ROOT_INODE)
    assert sorted(meta2.get(ROOT_INODE).children) == names


async def test_concurrent_lookups_in_one_folder_cost_one_listing(emu, sched, autojump_clock) -> None:
    d = emu.make_folder(0, "many")
    for i in range(20):
        emu.put_file(d, f"{i}.bin", b"z")
    meta = MetaCache(sched, 0)
    many = await meta.lookup(ROOT_INODE, "many")
    async with trio.open_nursery() as n:
        for i in range(20):
            n.start_soon(meta.lookup, many.ino, f"{i}.bin")
    assert listings(emu) == 2


async def test_resolve_path_and_rebase(emu, sched, autojump_clock) -> None:
    a = emu.make_folder(0, "a")
    b = emu.make_folder(a, "b")
    emu.put_file(b, "inside.txt", b"in")
    meta = MetaCache(sched, 0)
    node = await meta.resolve_path("/a/b")
    assert node.folder_id == b
    meta.rebase(node)
    assert (await meta.lookup(ROOT_INODE, "inside.txt")).size == 2
    with pytest.raises(NoEntry):
        await MetaCache(sched, 0).resolve_path("/a/nope")
