"""Persisted listings (metastore.py) over the in-process emulator, limits ON, mock clock."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import trio

from fichierfs.api import FichierClient
from fichierfs.meta import ROOT_INODE, MetaCache
from fichierfs.metastore import FORMAT, MetaStore
from fichierfs.scheduler import Budgets, Scheduler
from tests.core.conftest import listings


def _tree(emu) -> None:
    for i in range(3):
        d = emu.make_folder(0, f"d{i}")
        sub = emu.make_folder(d, "sub")
        for j in range(4):
            emu.put_file(d, f"f{j}.txt", b"x" * (j + i + 1))
        emu.put_file(sub, "deep.bin", b"deep" * (i + 1))
    emu.put_file(0, "top.txt", b"top")


async def _walk(meta: MetaCache, ino: int = ROOT_INODE, path: str = "") -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    await meta.ensure_listed(ino)
    for child in list(meta.children(ino)):
        p = f"{path}/{child.name}"
        out[p] = (child.ino, child.size)
        if child.is_dir:
            out.update(await _walk(meta, child.ino, p))
    return out


async def test_remount_serves_persisted_tree_with_same_inodes_and_no_listing(emu, sched, autojump_clock,
                                                                             tmp_path: Path) -> None:
    _tree(emu)
    db = tmp_path / "metadata.db"
    store = MetaStore(db, "id-1")
    meta = MetaCache(sched, 0)
    meta.attach_store(store)
    first = await _walk(meta)
    assert len(first) == 3 * 7 + 1
    assert meta.persist_dirty() == 7  # root + 3 folders + 3 subs
    assert store.flush() == 7
    store.close()
    before = listings(emu)

    store2 = MetaStore(db, "id-1")
    assert store2.rebuilt is None
    snap = store2.load()
    assert snap is not None and snap.root_folder_id == 0
    meta2 = MetaCache(sched, 0, dir_ttl=600)
    assert meta2.load(snap) == 7
    second = await _walk(meta2)
    assert second == first  # same names, sizes and inode numbers
    assert listings(emu) == before  # 0 listing calls
    new = meta2.add_node(ROOT_INODE, "new.txt", is_dir=False, local_key="local:1")
    assert new.ino > max(i for i, _ in first.values())  # new inodes never reuse persisted ones


async def test_persisted_listing_keeps_its_age_and_is_revalidated_in_background(emu, sched, autojump_clock,
                                                                                tmp_path: Path) -> None:
    emu.put_file(0, "a.txt", b"a")
    db = tmp_path / "metadata.db"
    store = MetaStore(db, "id")
    meta = MetaCache(sched, 0)
    meta.attach_store(store)
    await meta.ensure_listed(ROOT_INODE)
    meta.persist_dirty()
    store.close()
    emu.put_file(0, "b.txt", b"b")
    store2 = MetaStore(db, "id")
    snap = store2.load()
    assert snap is not None
    import time

    meta2 = MetaCache(sched, 0, dir_ttl=60)
    meta2.attach_store(store2)
    meta2.load(snap, wall=time.time() + 120)  # two minutes later: stale
    assert not meta2.is_fresh(meta2.get(ROOT_INODE))
    async with trio.open_nursery() as n:
        meta2.attach_nursery(n)
        node = await meta2.ensure_listed(ROOT_INODE)  # served at once
        assert set(node.children) == {"a.txt"}
        await trio.sleep(40)
    assert set(meta2.get(ROOT_INODE).children) == {"a.txt", "b.txt"}


@pytest.mark.parametrize("damage", ["garbage", "foreign", "old-format", "truncated"])
async def test_untrusted_db_is_rebuilt(emu, sched, autojump_clock, tmp_path: Path, damage: str) -> None:
    emu.put_file(0, "a.txt", b"a")
    db = tmp_path / "metadata.db"
    store = MetaStore(db, "mine")
    meta = MetaCache(sched, 0)
    meta.attach_store(store)
    await meta.ensure_listed(ROOT_INODE)
    meta.persist_dirty()
    store.close()
    identity = "mine"
    if damage == "garbage":
        raw = bytearray(db.read_bytes())
        raw[0:16] = b"not sqlite at al"
        db.write_bytes(bytes(raw))
    elif damage == "truncated":
        db.write_bytes(db.read_bytes()[:1500])
    elif damage == "foreign":
        identity = "another account"
    else:
        c = sqlite3.connect(db)
        c.execute(f"PRAGMA user_version={FORMAT - 1}")
        c.commit()
        c.close()
    store2 = MetaStore(db, identity)
    assert store2.rebuilt is not None
    assert store2.load() is None  # nothing trusted
    # and it works again as a fresh store
    store2.set_root(0, ROOT_INODE)
    meta2 = MetaCache(sched, 0)
    meta2.attach_store(store2)
    await trio.sleep(31)
    await meta2.refresh(ROOT_INODE)
    meta2.persist_dirty()
    store2.close()
    snap = MetaStore(db, identity).load()
    assert snap is not None and [f.filename for f in snap.folders[0].listing.files] == ["a.txt"]


async def test_forget_drops_persisted_listing(emu, sched, autojump_clock, tmp_path: Path) -> None:
    d = emu.make_folder(0, "d")
    emu.put_file(d, "x", b"x")
    db = tmp_path / "metadata.db"
    store = MetaStore(db, "id")
    meta = MetaCache(sched, 0)
    meta.attach_store(store)
    await _walk(meta)
    meta.persist_dirty()
    store.flush()
    dnode = meta.get_nowait(ROOT_INODE, "d")
    assert dnode is not None
    meta.forget_listing(dnode.ino)
    assert not meta.is_fresh(dnode) and "x" in dnode.children  # still served
    meta.persist_dirty()
    store.close()
    snap = MetaStore(db, "id").load()
    assert snap is not None and [p.folder_id for p in snap.folders] == [0]


async def test_prefetch_tree_lists_every_folder_in_background_lane(emu, sched, autojump_clock) -> None:
    _tree(emu)
    meta = MetaCache(sched, 0)
    await meta.prefetch_tree()
    assert listings(emu) == 7  # root + 3 folders + 3 sub-folders, once each
    assert all(meta.is_fresh(n) for n in meta._nodes.values() if n.is_dir)
    await meta.prefetch_tree()  # everything fresh: nothing to do
    assert listings(emu) == 7


async def test_remount_key_check_is_one_file_info_and_a_revoked_key_fails(emu, http, sched, autojump_clock,
                                                                          tmp_path: Path) -> None:
    from fichierfs.core import serve_persisted
    from fichierfs.errors import AuthError

    _tree(emu)
    db = tmp_path / "metadata.db"
    store = MetaStore(db, "id")
    meta = MetaCache(sched, 0)
    meta.attach_store(store)
    await _walk(meta)
    meta.persist_dirty()
    store.close()
    snap = MetaStore(db, "id").load()
    assert snap is not None
    calls = dict(emu.stats()["calls"])
    assert await serve_persisted(MetaCache(sched, 0), sched, snap) is True
    after = emu.stats()["calls"]
    assert after.get("file/info", 0) - calls.get("file/info", 0) == 1
    assert listings(emu) == sum(calls.get(k, 0) for k in ("folder/ls", "file/ls"))  # no listing
    bad = Scheduler(FichierClient(http, "revoked-key"), Budgets())
    async with trio.open_nursery() as n:
        await n.start(bad.run)
        t0 = trio.current_time()
        with pytest.raises(AuthError):
            await serve_persisted(MetaCache(bad, 0), bad, snap)
        assert trio.current_time() - t0 < 5  # no 30 s wait
        bad.stop()
        n.cancel_scope.cancel()
