"""Write-back bugs found by the fault soak (scripts/soak.py), each replayed deterministically
over the in-process emulator: a "kill -9" is the end of one rig mount without draining."""

from __future__ import annotations

import functools
import os
from datetime import datetime, timezone
from typing import Any

import pytest
import trio

from fichierfs import crashpoint
from fichierfs.budget import MemoryBudget
from fichierfs.errors import ServerError
from fichierfs.meta import ROOT_INODE, MetaCache
from fichierfs.metastore import MetaStore
from fichierfs.models import FileUrl, FolderId, RemoteFile
from tests.core.write_rig import Crash, Rig, killed, names, read_all, sync, write_file


@pytest.fixture
def autojump_clock(write_clock):  # noqa: ANN001 - see tests/core/conftest.py
    return write_clock


async def test_replayed_move_stays_at_its_new_place_when_folders_are_listed(rig: Rig, emu: Any,
                                                                            autojump_clock: Any) -> None:
    """A journaled move of a remote file, replayed after a kill, must not go back to its old
    place when the old folder is listed (the listing still shows it there until file/mv runs),
    nor vanish from the new one. Soak: `mv a/f0.bin b/m702.bin` acknowledged, kill, remount:
    `ls a` showed f0.bin again and `b/m702.bin` was ENOENT, yet the move landed later."""
    a = emu.make_folder(0, "a")
    b = emu.make_folder(0, "b")
    emu.put_file(a, "f0.bin", b"payload")
    with killed():
        async with rig.mount(run_writer=False) as fs:
            na = await fs.lookup(ROOT_INODE, "a")
            nb = await fs.lookup(ROOT_INODE, "b")
            assert await names(fs, na.ino) == ["f0.bin"]
            assert await names(fs, nb.ino) == []
            await fs.rename(na.ino, "f0.bin", nb.ino, "m702.bin")
            raise Crash("kill -9")
    async with rig.mount(run_writer=False) as fs:  # the move is still pending
        nb = await fs.lookup(ROOT_INODE, "b")
        assert await names(fs, nb.ino) == ["m702.bin"]
        na = await fs.lookup(ROOT_INODE, "a")
        assert await names(fs, na.ino) == []  # the old folder's listing still has f0.bin
        assert await names(fs, nb.ino) == ["m702.bin"]
        # a later re-list of both (the dir TTL ran out) changes nothing
        await trio.sleep(31)  # one listing per folder per 30 s (§4)
        await fs.meta.refresh(na.ino)
        await fs.meta.refresh(nb.ino)
        assert await names(fs, na.ino) == []
        assert await names(fs, nb.ino) == ["m702.bin"]
        node = await fs.lookup(nb.ino, "m702.bin")
        assert node.size == len(b"payload")
    async with rig.mount() as fs:
        await sync(fs)
    assert emu.list_files(a) == []
    assert [f["filename"] for f in emu.list_files(b)] == ["m702.bin"]


async def test_replayed_folder_move_stays_at_its_new_place(rig: Rig, emu: Any, autojump_clock: Any) -> None:
    """The same for a journaled folder move (folder/mv) replayed after a kill."""
    a = emu.make_folder(0, "a")
    emu.make_folder(0, "b")
    emu.make_folder(a, "sub")
    with killed():
        async with rig.mount(run_writer=False) as fs:
            na = await fs.lookup(ROOT_INODE, "a")
            nb = await fs.lookup(ROOT_INODE, "b")
            assert await names(fs, na.ino) == ["sub"]
            assert await names(fs, nb.ino) == []
            await fs.rename(na.ino, "sub", nb.ino, "moved")
            raise Crash("kill -9")
    async with rig.mount(run_writer=False) as fs:
        nb = await fs.lookup(ROOT_INODE, "b")
        assert await names(fs, nb.ino) == ["moved"]
        na = await fs.lookup(ROOT_INODE, "a")
        assert await names(fs, na.ino) == []
        await trio.sleep(31)  # one listing per folder per 30 s (§4)
        await fs.meta.refresh(na.ino)
        await fs.meta.refresh(nb.ino)
        assert await names(fs, na.ino) == []
        assert await names(fs, nb.ino) == ["moved"]


async def test_move_into_a_local_folder_removed_before_its_mkdir_drains(rig: Rig, emu: Any,
                                                                         autojump_clock: Any) -> None:
    """Soak bug 1: a remote file moved into a folder made locally (mkdir not done yet), then the
    file and the folder removed: the journaled move into the never-created folder must not
    wait for ever (it blocked every later change of its old folder: rmdir → #366 for ever)."""
    a = emu.make_folder(0, "a")
    emu.put_file(a, "x.bin", b"x" * 100)
    with killed():
        async with rig.mount(run_writer=False) as fs:
            na = await fs.lookup(ROOT_INODE, "a")
            assert await names(fs, na.ino) == ["x.bin"]
            d = await fs.mkdir(ROOT_INODE, "d", 0o755)
            await fs.rename(na.ino, "x.bin", d.ino, "y.bin")
            await fs.unlink(d.ino, "y.bin")
            await fs.rmdir(ROOT_INODE, "d")
            await fs.rmdir(ROOT_INODE, "a")
            raise Crash("kill -9")
    async with rig.mount() as fs:
        with trio.fail_after(600):
            await sync(fs)
        assert fs.status()["writeback"]["pending"] == 0
        assert await names(fs) == []
    assert emu.list_folders(0) == []  # "a" removed (was blocked by the move), "d" never made


async def test_file_mv_whose_reply_was_cut_is_not_retried_for_ever(rig: Rig, emu: Any,
                                                                    autojump_clock: Any) -> None:
    """Soak bug 2: file/mv done but its reply truncated; the retry is refused "#313 move to the
    same name" — the writer must see the move is done instead of retrying for ever."""
    a = emu.make_folder(0, "a")
    b = emu.make_folder(0, "b")
    emu.put_file(a, "x.bin", b"x" * 100)
    async with rig.mount() as fs:
        na = await fs.lookup(ROOT_INODE, "a")
        nb = await fs.lookup(ROOT_INODE, "b")
        assert await names(fs, na.ino) == ["x.bin"]
        assert await names(fs, nb.ino) == []
        emu.inject("file/mv", "truncate")
        await fs.rename(na.ino, "x.bin", nb.ino, "y.bin")  # file/mv with rename
        with trio.fail_after(600):
            await sync(fs)
        assert fs.status()["writeback"]["failed"] == 0
    assert emu.list_files(a) == []
    assert [f["filename"] for f in emu.list_files(b)] == ["y.bin"]
    assert emu.stats()["calls"]["file/mv"] == 2  # the cut one and the #313 retry, then done


@pytest.mark.parametrize("end_pl", [True, False], ids=["end.pl-kept", "end.pl-gone"])
async def test_write_during_the_post_then_kill_loses_nothing_and_leaves_one_copy(
        rig: Rig, emu: Any, autojump_clock: Any, monkeypatch: pytest.MonkeyPatch, end_pl: bool) -> None:
    """A write while the file's POST is in flight (copy on write: the batch keeps its
    snapshot), then a kill after the POST landed. After the remount the newer content must be
    uploaded (the soak saw appends lost after a kill -9) and the POSTed snapshot found, by
    end.pl or, when end.pl has nothing, by the listing with the SNAPSHOT's whirlpool, not the
    staging file's (else it is uploaded twice and the first copy stays: soak duplicates)."""
    first = os.urandom(50_000)
    extra = b"appended\n"
    state: dict[str, Any] = {}

    def hook(step: str) -> None:
        fs = state["fs"]
        if step == "before_post":  # as from a handle opened for append while the batch formed
            st = fs.writer.staged(state["ino"])
            fs.writer.write(st, len(first), extra)
        elif step == "after_post":
            raise Crash(step)

    with killed():
        async with rig.mount() as fs:
            state["fs"] = fs
            monkeypatch.setattr(crashpoint, "hit", hook)
            state["ino"] = await write_file(fs, ROOT_INODE, "f.bin", first)
            with trio.fail_after(600):
                await sync(fs)
    monkeypatch.setattr(crashpoint, "hit", lambda step: None)
    if not end_pl:
        emu._uploads.clear()  # end.pl has forgotten the upload: only the listing can tell
    async with rig.mount() as fs:
        with trio.fail_after(600):
            await sync(fs)
        node = await fs.lookup(ROOT_INODE, "f.bin")
        assert await read_all(fs, node.ino) == first + extra
    files = emu.list_files(0)
    assert [f["filename"] for f in files] == ["f.bin"], files
    assert emu.read_file(files[0]["url"]) == first + extra


async def test_replayed_local_folder_survives_the_relisting_of_its_parent(rig: Rig, emu: Any,
                                                                          autojump_clock: Any) -> None:
    """A folder made locally (mkdir journaled, not done yet), then a kill: after the remount it
    must stay in its parent when the parent is listed again (a folder we changed is re-listed
    before it is served). Soak: `mkdir cp_r505/d678` acknowledged, kill: absent after the
    remount, yet its mkdir ran later (an extra remote folder)."""
    a = emu.make_folder(0, "a")
    emu.put_file(a, "x.bin", b"x")
    async with rig.mount() as fs:
        na = await fs.lookup(ROOT_INODE, "a")
        assert await names(fs, na.ino) == ["x.bin"]
        await trio.sleep(5)  # the listings are persisted
    with killed():
        async with rig.mount(run_writer=False) as fs:
            na = await fs.lookup(ROOT_INODE, "a")
            await fs.mkdir(na.ino, "d", 0o755)
            raise Crash("kill -9")
    async with rig.mount(run_writer=False) as fs:  # the mkdir is still pending
        na = await fs.lookup(ROOT_INODE, "a")
        assert await names(fs, na.ino) == ["d", "x.bin"]
        await trio.sleep(31)
        await fs.meta.refresh(na.ino)
        assert await names(fs, na.ino) == ["d", "x.bin"]
    async with rig.mount() as fs:
        with trio.fail_after(600):
            await sync(fs)
        na = await fs.lookup(ROOT_INODE, "a")
        assert await names(fs, na.ino) == ["d", "x.bin"]
    assert [f["name"] for f in emu.list_folders(a)] == ["d"]


async def test_renamed_then_overwritten_file_in_a_subfolder_after_a_kill(rig: Rig, emu: Any,
                                                                        autojump_clock: Any) -> None:
    """`mv a/w.bin a/m.bin` (journaled file/rename) then `cp new a/m.bin` (a local copy that
    replaces the remote one), kill: the replay must show ONE m.bin, the new content. Soak: the
    pending rename's node took the name in a folder not loaded yet (no clash check for orphans),
    so `cat` gave the old remote bytes and a later write made a second copy (a duplicate)."""
    a = emu.make_folder(0, "a")
    old = os.urandom(70_000)
    new = os.urandom(20_000)
    emu.put_file(a, "w.bin", old)
    with killed():
        async with rig.mount(run_writer=False) as fs:
            na = await fs.lookup(ROOT_INODE, "a")
            assert await names(fs, na.ino) == ["w.bin"]
            await fs.rename(na.ino, "w.bin", na.ino, "m.bin")
            node = await fs.lookup(na.ino, "m.bin")
            fh = await fs.open(node.ino, os.O_WRONLY | os.O_TRUNC)
            fs.write(fh, 0, new)
            await fs.flush(fh)
            fs.release(fh)
            raise Crash("kill -9")
    async with rig.mount(run_writer=False) as fs:
        na = await fs.lookup(ROOT_INODE, "a")
        assert await names(fs, na.ino) == ["m.bin"]
        node = await fs.lookup(na.ino, "m.bin")
        assert await read_all(fs, node.ino) == new
    async with rig.mount() as fs:
        with trio.fail_after(600):
            await sync(fs)
        na = await fs.lookup(ROOT_INODE, "a")
        assert await names(fs, na.ino) == ["m.bin"]
    files = emu.list_files(a)
    assert [f["filename"] for f in files] == ["m.bin"], files
    assert emu.read_file(files[0]["url"]) == new


async def test_replayed_move_of_a_replaced_copy_shows_the_new_copy(rig: Rig, emu: Any, autojump_clock: Any) -> None:
    """`mv a/w.bin a/m.bin` (file/rename failing), `cp new a/m.bin` uploaded (the old copy's
    file/rm queued behind the rename), kill: after the remount m.bin is the NEW copy, not the
    old one the pending rename would show (soak: a later `mv m.bin …` moved the doomed old copy:
    "no longer exists" for ever, the new copy left behind)."""
    a = emu.make_folder(0, "a")
    old = os.urandom(7_000)
    new = os.urandom(5_000)
    emu.put_file(a, "w.bin", old)
    emu.inject("file/rename", "5xx", nth=1, count=1000)
    with killed():
        async with rig.mount() as fs:
            na = await fs.lookup(ROOT_INODE, "a")
            assert await names(fs, na.ino) == ["w.bin"]
            await fs.rename(na.ino, "w.bin", na.ino, "m.bin")
            node = await fs.lookup(na.ino, "m.bin")
            fh = await fs.open(node.ino, os.O_WRONLY | os.O_TRUNC)
            fs.write(fh, 0, new)
            await fs.flush(fh)
            fs.release(fh)
            assert fs.writer is not None
            with trio.fail_after(600):
                while fs.writer.store.files():
                    await trio.sleep(1)
            assert {o.kind for o in fs.writer.store.ops()} == {"mv", "rm"}
            raise Crash("kill -9")
    emu.faults.clear()
    async with rig.mount(run_writer=False) as fs:
        na = await fs.lookup(ROOT_INODE, "a")
        assert await names(fs, na.ino) == ["m.bin"]
        node = await fs.lookup(na.ino, "m.bin")
        assert await read_all(fs, node.ino) == new
    async with rig.mount() as fs:
        with trio.fail_after(600):
            await sync(fs)
    files = emu.list_files(a)
    assert [f["filename"] for f in files] == ["m.bin"], files
    assert emu.read_file(files[0]["url"]) == new


@pytest.mark.parametrize("kind", ["truncate", "5xx", "reset"])
async def test_a_download_cut_short_is_retried_not_eio(rig: Rig, emu: Any, autojump_clock: Any, kind: str) -> None:
    """Soak bug 10 (part): a ranged GET whose body was cut short (or a 5xx, a reset) surfaced
    EIO to `cat` and to an append (its copy-in reads the file): it is tried again."""
    data = os.urandom(600_000)
    emu.put_file(0, "f.bin", data)
    async with rig.mount(run_writer=False) as fs:
        node = await fs.lookup(ROOT_INODE, "f.bin")
        emu.inject("download", kind)
        assert await read_all(fs, node.ino) == data
    assert emu.stats()["calls"]["download"] >= 2


@pytest.mark.parametrize("move", [False, True], ids=["overwrite", "overwrite-then-move"])
async def test_rewrite_flushed_during_the_post_then_kill_leaves_no_stray_copy(rig: Rig, emu: Any, autojump_clock: Any,
                                                                             move: bool) -> None:
    """`cp new a/f.bin` (O_TRUNC, write, close) while the first content's POST is in flight,
    maybe `mv a/f.bin b/m.bin`, then a kill before end.pl. The close's flush journaled the
    rewrite as a plain "dirty" row and forgot the POST: after the remount the POSTed copy was
    never looked for (an extra file in `a`, shown there, or a duplicate f.bin). Soak: rmdir of
    the emptied folder got ENOTEMPTY after the remount; an `rm -r` left a file and its folders
    (folder/rm "not empty" for ever)."""
    a = emu.make_folder(0, "a")
    b = emu.make_folder(0, "b")
    first, new = os.urandom(30_000), os.urandom(20_000)
    posted, gate = trio.Event(), trio.Event()
    with killed():
        async with rig.mount() as fs:
            client = fs.scheduler.client
            orig = client.upload_post

            @functools.wraps(orig)
            async def gated(*args: Any, **kw: Any) -> Any:
                got = await orig(*args, **kw)  # the POST lands …
                posted.set()
                await gate.wait()  # … and the kill comes before end.pl
                return got

            client.upload_post = gated  # type: ignore[method-assign]
            na = await fs.lookup(ROOT_INODE, "a")
            nb = await fs.lookup(ROOT_INODE, "b")
            assert await names(fs, na.ino) == [] and await names(fs, nb.ino) == []
            ino = await write_file(fs, na.ino, "f.bin", first)
            with trio.fail_after(600):
                await posted.wait()
            fh = await fs.open(ino, os.O_WRONLY | os.O_TRUNC)
            fs.write(fh, 0, new)
            await fs.flush(fh)
            fs.release(fh)
            if move:
                await fs.rename(na.ino, "f.bin", nb.ino, "m.bin")
            raise Crash("kill -9")
    assert len(emu.list_files(a)) == 1  # the first content landed in a
    where, name = (b, "m.bin") if move else (a, "f.bin")
    async with rig.mount(run_writer=False) as fs:
        na = await fs.lookup(ROOT_INODE, "a")
        nb = await fs.lookup(ROOT_INODE, "b")
        assert await names(fs, na.ino) == ([] if move else ["f.bin"])
        assert await names(fs, nb.ino) == (["m.bin"] if move else [])
        await trio.sleep(31)  # a fresh listing of `a` shows the POSTed copy: still hidden
        await fs.meta.refresh(na.ino)
        assert await names(fs, na.ino) == ([] if move else ["f.bin"])
        if move:
            await fs.rmdir(ROOT_INODE, "a")  # the soak's ENOTEMPTY
        node = await fs.lookup(nb.ino if move else na.ino, name)
        assert await read_all(fs, node.ino) == new
    async with rig.mount() as fs:
        with trio.fail_after(600):
            await sync(fs)
    if move:
        assert all(f["name"] != "a" for f in emu.list_folders(0))
    else:
        assert emu.list_files(b) == []
    files = emu.list_files(where)
    assert [f["filename"] for f in files] == [name], files
    assert emu.read_file(files[0]["url"]) == new


async def test_upload_done_right_after_a_relisting_survives_a_kill(rig: Rig, emu: Any, autojump_clock: Any) -> None:
    """A folder re-listed, then one of our uploads into it finishes (its journal row is gone),
    then a kill before the listing is persisted again (about once a second): the persisted view
    (the re-listing, without the new file) was not marked dirty, so the next mount served it
    and the file was invisible. Soak: `rm -r` of its folder left the file and its folders
    (folder/rm "not empty" for ever); after a rewrite, `mv` moved the old, deleted copy (#469)."""
    a = emu.make_folder(0, "a")
    emu.put_file(a, "x.bin", b"x" * 100)
    data = os.urandom(5_000)
    with killed():
        async with rig.mount() as fs:
            na = await fs.lookup(ROOT_INODE, "a")
            assert await names(fs, na.ino) == ["x.bin"]
            await trio.sleep(5)  # a's listing is persisted
            assert fs.writer is not None
            client = fs.scheduler.client
            end_pl, complete = client.upload_end, fs.writer.complete_batch

            @functools.wraps(end_pl)
            async def upload_end(*args: Any, **kw: Any) -> Any:
                got = await end_pl(*args, **kw)
                await fs.meta.refresh(na.ino)  # a background re-list lands first …
                return got

            def complete_batch(*args: Any, **kw: Any) -> None:
                complete(*args, **kw)  # … then the upload is journaled done …
                fs.meta.store = None  # … and the mount dies before the next persist (no final one)
                raise Crash("kill -9")

            client.upload_end = upload_end  # type: ignore[method-assign]
            fs.writer.complete_batch = complete_batch  # type: ignore[method-assign]
            await write_file(fs, na.ino, "new.bin", data)
            with trio.fail_after(600):
                await sync(fs)
    assert sorted(f["filename"] for f in emu.list_files(a)) == ["new.bin", "x.bin"]
    async with rig.mount(run_writer=False) as fs:
        na = await fs.lookup(ROOT_INODE, "a")
        assert await names(fs, na.ino) == ["new.bin", "x.bin"]
        node = await fs.lookup(na.ino, "new.bin")
        assert await read_all(fs, node.ino) == data


async def test_rmdir_of_the_folder_a_file_was_posted_to_does_not_block_its_move_out(rig: Rig, emu: Any,
                                                                                     autojump_clock: Any) -> None:
    """`rsync` into a/, `mv a/f.bin b/m.bin` and `rm -r a` while f.bin's POST (to a/, under its
    old name) is in flight: the upload's move out of `a` is journaled AFTER the rmdir of `a`.
    The rmdir (refused "not empty" #366 while the file is there) blocked every later op on `a`,
    the move out included: #366 for ever, the file left in `a`. Soak: an extra file and folders."""
    emu.make_folder(0, "a")
    b = emu.make_folder(0, "b")
    data = os.urandom(30_000)
    posted, gate = trio.Event(), trio.Event()
    async with rig.mount() as fs:
        client = fs.scheduler.client
        orig = client.upload_post

        @functools.wraps(orig)
        async def gated(*args: Any, **kw: Any) -> Any:
            posted.set()
            await gate.wait()
            return await orig(*args, **kw)

        client.upload_post = gated  # type: ignore[method-assign]
        na = await fs.lookup(ROOT_INODE, "a")
        nb = await fs.lookup(ROOT_INODE, "b")
        assert await names(fs, na.ino) == [] and await names(fs, nb.ino) == []
        await write_file(fs, na.ino, "f.bin", data)
        with trio.fail_after(600):
            await posted.wait()
        await fs.rename(na.ino, "f.bin", nb.ino, "m.bin")
        await fs.rmdir(ROOT_INODE, "a")
        gate.set()
        with trio.fail_after(600):
            await sync(fs)
        assert await names(fs) == ["b"]
    assert [f["name"] for f in emu.list_folders(0)] == ["b"]
    files = emu.list_files(b)
    assert [f["filename"] for f in files] == ["m.bin"], files
    assert emu.read_file(files[0]["url"]) == data
    assert emu.stats()["calls"].get("folder/rm", 0) == 1  # no "not empty" refusal on the way


async def test_folder_made_before_a_kill_and_listed_before_its_adoption_shows_once(rig: Rig, emu: Any,
                                                                                   autojump_clock: Any) -> None:
    """`mkdir a/d`, its folder/mkdir lands, kill before its answer is journaled. After the
    remount a listing of `a` (showing the remote `d`) comes before the writer's retry ("already
    exists", the folder adopted): `d` was shown twice ("d" the local node, "d (dup N)" the
    listed one), and the dup name could be the one persisted for the folder: after the next
    kill, `a/d` was ENOENT (soak: a whole rsync tree vanished from the mount)."""
    a = emu.make_folder(0, "a")
    with killed():
        async with rig.mount(run_writer=False) as fs:
            na = await fs.lookup(ROOT_INODE, "a")
            assert await names(fs, na.ino) == []
            await fs.mkdir(na.ino, "d", 0o755)
            raise Crash("kill -9")
    d = emu.make_folder(a, "d")  # the folder/mkdir had landed
    with killed():
        async with rig.mount(run_writer=False) as fs:
            await trio.sleep(31)  # one listing per folder per 30 s (§4)
            na = await fs.lookup(ROOT_INODE, "a")
            await fs.meta.refresh(na.ino)  # a listing of `a` before the writer runs
            assert await names(fs, na.ino) == ["d"]
            assert fs.writer is not None
            async with trio.open_nursery() as nursery:
                await nursery.start(fs.writer.run)
                with trio.fail_after(600):
                    await sync(fs)
                nursery.cancel_scope.cancel()
            assert await names(fs, na.ino) == ["d"]
            nd = await fs.lookup(na.ino, "d")
            assert int(fs.meta.get(nd.ino).folder_id or 0) == d
            await trio.sleep(5)  # the view of `a` is persisted
            raise Crash("kill -9")
    async with rig.mount(run_writer=False) as fs:
        na = await fs.lookup(ROOT_INODE, "a")
        assert await names(fs, na.ino) == ["d"]
    assert [f["name"] for f in emu.list_folders(a)] == ["d"]


async def test_removal_of_a_subfolder_journaled_after_its_parents_does_not_wait_behind_it(
        rig: Rig, emu: Any, autojump_clock: Any) -> None:
    """`mkdir a/d`, `rmdir a/d` while d's folder/mkdir is in flight, then `rmdir a`: d's removal
    is journaled when its mkdir answers, AFTER a's. a's folder/rm is refused "not empty" until
    d is gone; d's removal must not wait behind it (a 30-second soak left hundreds of removals
    queued behind one such folder)."""
    emu.make_folder(0, "a")
    made, gate = trio.Event(), trio.Event()
    async with rig.mount() as fs:
        client = fs.scheduler.client
        orig = client.folder_mkdir

        @functools.wraps(orig)
        async def gated(*args: Any, **kw: Any) -> Any:
            got = await orig(*args, **kw)
            made.set()
            await gate.wait()
            return got

        client.folder_mkdir = gated  # type: ignore[method-assign]
        na = await fs.lookup(ROOT_INODE, "a")
        assert await names(fs, na.ino) == []
        await fs.mkdir(na.ino, "d", 0o755)
        with trio.fail_after(600):
            await made.wait()
        await fs.rmdir(na.ino, "d")
        await fs.rmdir(ROOT_INODE, "a")
        gate.set()
        with trio.fail_after(600):
            await sync(fs)
        assert await names(fs) == []
    assert emu.list_folders(0) == []


async def test_a_listing_written_before_its_folders_row_is_kept(emu: Any, sched: Any, autojump_clock: Any,
                                                                 tmp_path: Any) -> None:
    """Listings persisted in one flush in child-first order: the child's and the parent's
    listings were dropped (their folder rows did not exist yet) while the rows were created
    by the parents' listings. Soak: a folder stayed unlisted in the DB, its sub-folder's stale
    listing became reachable later, and a file uploaded meanwhile was invisible after a kill."""
    a = emu.make_folder(0, "a")
    b = emu.make_folder(a, "b")
    emu.put_file(b, "f.bin", b"x")
    store = MetaStore(tmp_path / "metadata.db", "id-1")
    store.set_root(0, ROOT_INODE)
    ls = {f: await sched.call(sched.client.folder_ls, f, files=True) for f in (b, a, 0)}
    url = ls[b].files[0].url
    store.put_listing(b, ls[b], {url: 4})  # child first
    store.put_listing(a, ls[a], {b: 3})
    store.put_listing(0, ls[0], {a: 2})
    assert store.flush() == 3
    store.close()
    snap = MetaStore(tmp_path / "metadata.db", "id-1").load()
    assert snap is not None
    assert sorted(p.folder_id for p in snap.folders) == sorted([0, a, b])


async def test_an_upload_done_into_a_folder_not_loaded_marks_its_persisted_view(emu: Any, sched: Any,
                                                                                 autojump_clock: Any,
                                                                                 tmp_path: Any) -> None:
    """A file of the journal waits (an orphan) for its folder's first listing; its upload
    finishes before that, and the folder's persisted view (listed, clean, without the file) is
    served after the next kill: the file was invisible (soak: `mv …/sub/s.txt` ENOENT)."""
    a = emu.make_folder(0, "a")
    db = tmp_path / "metadata.db"
    store = MetaStore(db, "id-1")
    meta = MetaCache(sched, 0)
    meta.attach_store(store)
    na = await meta.lookup(ROOT_INODE, "a")
    await meta.ensure_listed(na.ino)
    meta.persist_dirty()
    store.flush()
    store.close()
    store = MetaStore(db, "id-1")
    meta = MetaCache(sched, 0)  # a new mount that has not loaded `a`
    meta.attach_store(store)
    node = meta.add_orphan(a, "new.bin", is_dir=False, local_key="local:1", size=3)
    assert node is not None
    url = emu.put_file(a, "new.bin", b"new")  # the upload landed
    rf = RemoteFile(FileUrl(url), "new.bin", 3, datetime.now(timezone.utc), "", folder_id=FolderId(a))
    meta.set_remote_file(node, rf, pinned_until=1e9)
    meta.persist_dirty()
    store.flush()
    store.close()
    snap = MetaStore(db, "id-1").load()
    assert snap is not None
    assert [p.dirty for p in snap.folders if p.folder_id == a] == [True]  # re-listed before it is served


async def test_the_search_for_a_post_cut_by_a_kill_lists_afresh(rig: Rig, emu: Any, autojump_clock: Any) -> None:
    """A folder listed (and its listing shared with the host's other mounts) while a file's POST
    to it was in flight; the POST lands and the mount is killed before it tells the others its
    listing is out of date; end.pl has forgotten the upload. After the remount the search for
    the POSTed copy was served that shared, older listing: not found, and the file was sent
    again — a duplicate, or (deleted meanwhile) a stray copy: soak, `rm -r` left m291.bin."""
    shared = MemoryBudget(trio.current_time)
    a = emu.make_folder(0, "a")
    data = os.urandom(20_000)
    started, gate = trio.Event(), trio.Event()
    with killed():
        async with rig.mount(shared=shared) as fs:
            client = fs.scheduler.client
            orig = client.upload_post

            @functools.wraps(orig)
            async def gated(*args: Any, **kw: Any) -> Any:
                started.set()
                await gate.wait()
                await orig(*args, **kw)  # the POST lands …
                raise Crash("kill -9")  # … and the mount dies before anything else

            client.upload_post = gated  # type: ignore[method-assign]
            na = await fs.lookup(ROOT_INODE, "a")
            assert await names(fs, na.ino) == []
            await write_file(fs, na.ino, "f.bin", data)
            with trio.fail_after(600):
                await started.wait()
            await trio.sleep(31)
            await fs.meta.refresh(na.ino)  # a listing during the POST, shared with the other mounts
            gate.set()
            with trio.fail_after(600):
                await sync(fs)
    emu._uploads.clear()  # end.pl has forgotten the upload: only the listing can tell
    assert [f["filename"] for f in emu.list_files(a)] == ["f.bin"]
    async with rig.mount(shared=shared) as fs:
        with trio.fail_after(600):
            await sync(fs)
    files = emu.list_files(a)
    assert [f["filename"] for f in files] == ["f.bin"], files
    assert emu.read_file(files[0]["url"]) == data


async def test_unlink_of_a_file_whose_post_is_not_resolved_yet_leaves_no_copy(rig: Rig, emu: Any,
                                                                               autojump_clock: Any) -> None:
    """The POST lands, a kill before end.pl; after the remount the file is removed before the
    writer has looked for the POSTed copy: the row was dropped (not uploading right now) and
    the copy stayed for ever (soak: `rm -r` left a file and its folders, #366)."""
    a = emu.make_folder(0, "a")
    with killed():
        async with rig.mount() as fs:
            client = fs.scheduler.client
            orig = client.upload_post

            @functools.wraps(orig)
            async def landed(*args: Any, **kw: Any) -> Any:
                await orig(*args, **kw)
                raise Crash("kill -9")

            client.upload_post = landed  # type: ignore[method-assign]
            na = await fs.lookup(ROOT_INODE, "a")
            assert await names(fs, na.ino) == []
            await write_file(fs, na.ino, "f.bin", os.urandom(5_000))
            with trio.fail_after(600):
                await sync(fs)
    assert [f["filename"] for f in emu.list_files(a)] == ["f.bin"]
    async with rig.mount(run_writer=False) as fs:
        na = await fs.lookup(ROOT_INODE, "a")
        assert await names(fs, na.ino) == ["f.bin"]
        await fs.unlink(na.ino, "f.bin")
        assert await names(fs, na.ino) == []
    async with rig.mount() as fs:
        with trio.fail_after(600):
            await sync(fs)
        na = await fs.lookup(ROOT_INODE, "a")
        assert await names(fs, na.ino) == []
    assert emu.list_files(a) == []


async def test_rmdir_of_a_local_folder_whose_mkdir_may_have_landed_removes_it(rig: Rig, emu: Any,
                                                                               autojump_clock: Any) -> None:
    """folder/mkdir reached 1fichier but its answer was lost and every retry failed (the
    emulator restarting); the user then removed the folder, still local for the mount: its row
    was simply dropped and the folder made by the first try stayed for ever (soak: its parent's
    removal refused "not empty" #366 until the drain timed out)."""
    calls = []
    async with rig.mount() as fs:
        client = fs.scheduler.client
        orig = client.folder_mkdir

        @functools.wraps(orig)
        async def flaky(*args: Any, **kw: Any) -> Any:
            calls.append(args)
            if len(calls) == 1:
                await orig(*args, **kw)  # made, and the answer lost
            if len(calls) <= 5:  # the first try and the scheduler's 4 retries
                raise ServerError("folder/mkdir: connection failed (ConnectError)")
            return await orig(*args, **kw)

        client.folder_mkdir = flaky  # type: ignore[method-assign]
        await fs.mkdir(ROOT_INODE, "d", 0o755)
        assert fs.writer is not None
        with trio.fail_after(600):
            while not any(d.attempts for d in fs.writer.store.dirs()):
                await trio.sleep(0.1)
        assert [f["name"] for f in emu.list_folders(0)] == ["d"]
        await fs.rmdir(ROOT_INODE, "d")
        assert await names(fs) == []
        with trio.fail_after(600):
            await sync(fs)
        assert await names(fs) == []
    assert emu.list_folders(0) == []
