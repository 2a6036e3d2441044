"""Write side of the vfs over the in-process emulator (limits ON, MockClock)."""

from __future__ import annotations

import errno
import os

import pytest
import trio
import whirlpool

from fichierfs.errors import FichierError
from fichierfs.meta import ROOT_INODE
from fichierfs.vfs import RENAME_EXCHANGE, RENAME_NOREPLACE
from tests.core.write_rig import MiB, Rig, names, read_all, sync, write_file


@pytest.fixture
def autojump_clock(write_clock):  # noqa: ANN001 - see tests/core/conftest.py
    return write_clock


def _wp(data: bytes) -> str:
    return whirlpool.new(data).hexdigest().lower()


async def test_new_file_costs_three_calls_and_overwrite_four(rig: Rig, emu, autojump_clock) -> None:
    data = os.urandom(MiB + 17)
    async with rig.mount() as fs:
        emu.reset_stats()
        ino = await write_file(fs, ROOT_INODE, "a.bin", data)
        assert fs.getattr(ino).size == len(data)  # stat shows local size at once
        assert await read_all(fs, ino) == data  # read-your-writes
        assert sum(emu.stats()["calls"].values()) == 0  # nothing until the quiet delay
        await sync(fs)
        calls = {k: v for k, v in emu.stats()["calls"].items() if v}
        assert calls == {"upload/get_upload_server": 1, "upload.cgi": 1, "end.pl": 1}
        [f] = emu.list_files(0)
        assert f["filename"] == "a.bin" and f["whirlpool"] == _wp(data)
        assert await names(fs) == ["a.bin"]
        assert sum(emu.stats()["calls"].values()) == 3  # listing updated from end.pl, no re-list
        emu.reset_stats()
        new = os.urandom(2 * MiB)
        await write_file(fs, ROOT_INODE, "a.bin", new)
        await sync(fs)
        calls = {k: v for k, v in emu.stats()["calls"].items() if v}
        assert calls == {"upload/get_upload_server": 1, "upload.cgi": 1, "end.pl": 1, "file/rm": 1}
        [f] = emu.list_files(0)
        assert f["whirlpool"] == _wp(new)
        assert await read_all(fs, ino) == new


async def test_append_and_mid_file_overwrite_survive_remount(rig: Rig, emu, autojump_clock) -> None:
    data = bytearray(os.urandom(3 * MiB))
    async with rig.mount() as fs:
        ino = await write_file(fs, ROOT_INODE, "g.bin", bytes(data[:MiB]))
        await sync(fs)
        fh = await fs.open(ino, os.O_WRONLY | os.O_APPEND)
        fs.write(fh, 0, bytes(data[MiB:]))  # O_APPEND: at the end whatever the offset
        await fs.flush(fh)
        fs.release(fh)
        await sync(fs)
    async with rig.mount() as fs:
        node = await fs.lookup(ROOT_INODE, "g.bin")
        fh = await fs.open(node.ino, os.O_RDWR)  # no O_TRUNC: content fetched first
        fs.write(fh, 1_000_000, b"PATCHED")
        await fs.flush(fh)
        fs.release(fh)
        data[1_000_000:1_000_007] = b"PATCHED"
        assert await read_all(fs, node.ino) == bytes(data)
        await sync(fs)
    async with rig.mount() as fs:
        node = await fs.lookup(ROOT_INODE, "g.bin")
        assert node.size == len(data)
        assert await read_all(fs, node.ino) == bytes(data)
    files = emu.list_files(0)
    assert len(files) == 1 and files[0]["whirlpool"] == _wp(bytes(data))


async def test_editor_save_rename_over_and_empty_files(rig: Rig, emu, autojump_clock) -> None:
    async with rig.mount() as fs:
        await write_file(fs, ROOT_INODE, "doc.txt", b"v1\n")
        await sync(fs)
        emu.reset_stats()
        await write_file(fs, ROOT_INODE, ".doc.txt.swp", b"v2\n")
        await fs.rename(ROOT_INODE, ".doc.txt.swp", ROOT_INODE, "doc.txt")
        fh, _ = await fs.create(ROOT_INODE, "empty", 0o600, os.O_WRONLY | os.O_CREAT)
        await fs.flush(fh)
        fs.release(fh)
        assert await names(fs) == ["doc.txt", "empty"]
        doc = await fs.lookup(ROOT_INODE, "doc.txt")
        await fs.setattr(doc.ino, mtime=1_600_000_000.0)
        await sync(fs)
        calls = {k: v for k, v in emu.stats()["calls"].items() if v}
        assert calls == {"upload/get_upload_server": 1, "upload.cgi": 1, "end.pl": 1, "file/rm": 1}
    async with rig.mount() as fs:
        assert await names(fs) == ["doc.txt", "empty"]
        doc = await fs.lookup(ROOT_INODE, "doc.txt")
        assert await read_all(fs, doc.ino) == b"v2\n"
        assert int(doc.mtime) == 1_600_000_000
        e = await fs.lookup(ROOT_INODE, "empty")
        assert e.size == 0 and e.mode & 0o777 == 0o600
        assert await read_all(fs, e.ino) == b""
    assert [f["filename"] for f in emu.list_files(0)] == ["doc.txt"]


async def test_namespace_ops(rig: Rig, emu, autojump_clock) -> None:
    async with rig.mount() as fs:
        d = await fs.mkdir(ROOT_INODE, "dir", 0o755)
        sub = await fs.mkdir(d.ino, "sub", 0o755)
        await write_file(fs, sub.ino, "x.txt", b"x" * 100)
        await write_file(fs, ROOT_INODE, "y.txt", b"y" * 100)
        assert await names(fs) == ["dir", "y.txt"]
        with pytest.raises(FichierError) as e:
            await fs.rmdir(ROOT_INODE, "dir")
        assert e.value.errno == errno.ENOTEMPTY
        with pytest.raises(FichierError) as e:
            await fs.mkdir(ROOT_INODE, "dir", 0o755)
        assert e.value.errno == errno.EEXIST
        with pytest.raises(FichierError) as e:
            await fs.create(ROOT_INODE, "n" * 251, 0o644, os.O_WRONLY | os.O_CREAT)
        assert e.value.errno == errno.ENAMETOOLONG
        with pytest.raises(FichierError) as e:
            await fs.rename(ROOT_INODE, "y.txt", ROOT_INODE, "dir", RENAME_NOREPLACE)
        assert e.value.errno == errno.EEXIST
        with pytest.raises(FichierError) as e:
            await fs.rename(ROOT_INODE, "y.txt", ROOT_INODE, "z", RENAME_EXCHANGE)
        assert e.value.errno == errno.EINVAL
        with pytest.raises(FichierError) as e:
            await fs.rename(ROOT_INODE, "dir", sub.ino, "loop")
        assert e.value.errno == errno.EINVAL
        await sync(fs)
        dir_id = emu.list_folders(0)[0]["id"]
        sub_id = emu.list_folders(dir_id)[0]["id"]
        assert [f["filename"] for f in emu.list_files(sub_id)] == ["x.txt"]
        emu.reset_stats()
        # rename in place, move across folders (same name), move + rename, folder rename + move
        await fs.rename(ROOT_INODE, "y.txt", ROOT_INODE, "y2.txt")
        await fs.rename(sub.ino, "x.txt", d.ino, "x.txt")
        await fs.rename(d.ino, "x.txt", ROOT_INODE, "x-moved.txt")
        await fs.rename(d.ino, "sub", ROOT_INODE, "sub2")
        assert await names(fs) == ["dir", "sub2", "x-moved.txt", "y2.txt"]
        await sync(fs)
        assert sorted(f["filename"] for f in emu.list_files(0)) == ["x-moved.txt", "y2.txt"]
        assert sorted(f["name"] for f in emu.list_folders(0)) == ["dir", "sub2"]
        calls = {k: v for k, v in emu.stats()["calls"].items() if v}
        assert calls["folder/mv"] == 2 and calls["file/rename"] == 1 and "folder/ls" not in calls
        await fs.unlink(ROOT_INODE, "y2.txt")
        await fs.rmdir(ROOT_INODE, "sub2")
        await sync(fs)
        assert [f["filename"] for f in emu.list_files(0)] == ["x-moved.txt"]
        assert [f["name"] for f in emu.list_folders(0)] == ["dir"]
    async with rig.mount() as fs:
        assert await names(fs) == ["dir", "x-moved.txt"]


async def test_read_only_and_unsupported(rig: Rig, emu, autojump_clock) -> None:
    emu.put_file(0, "r.txt", b"r")
    async with rig.mount() as fs:
        fs.read_only = True
        r = await fs.lookup(ROOT_INODE, "r.txt")
        for coro in (fs.open(r.ino, os.O_WRONLY), fs.mkdir(ROOT_INODE, "d", 0o755), fs.unlink(ROOT_INODE, "r.txt"),
                     fs.create(ROOT_INODE, "c", 0o644, os.O_WRONLY), fs.setattr(r.ino, size=0)):
            with pytest.raises(FichierError) as e:
                await coro
            assert e.value.errno == errno.EROFS


async def test_flood_lock_does_not_fail_mkdir_p_or_cp(rig: Rig, emu, autojump_clock) -> None:
    async with rig.mount() as fs:
        emu.lock_for(120)
        a = await fs.mkdir(ROOT_INODE, "a", 0o755)
        b = await fs.mkdir(a.ino, "b", 0o755)
        for i in range(5):
            await write_file(fs, b.ino, f"f{i}", bytes([i]) * 1000)
        assert await names(fs, b.ino) == [f"f{i}" for i in range(5)]
        await sync(fs)
    a_id = emu.list_folders(0)[0]["id"]
    b_id = emu.list_folders(a_id)[0]["id"]
    assert sorted(f["filename"] for f in emu.list_files(b_id)) == [f"f{i}" for i in range(5)]


async def test_status_document(rig: Rig, emu, autojump_clock) -> None:
    import json

    async with rig.mount() as fs:
        await write_file(fs, ROOT_INODE, "s.bin", b"s" * 5000)
        wb = json.loads(fs.getxattr(ROOT_INODE, "user.fichierfs.status"))["writeback"]
        assert wb["pending"] == 1 and wb["pending_bytes"] == 5000 and wb["journal"] == 1
        for k in ("uploading", "uploaded_files", "uploaded_bytes", "rate", "failed", "errors"):
            assert k in wb
        await sync(fs)
        wb = fs.status()["writeback"]
        assert wb["pending"] == 0 and wb["uploaded_files"] == 1 and wb["uploaded_bytes"] == 5000


@pytest.mark.parametrize(
    "endpoint,kind",
    [("upload.cgi", "5xx"), ("upload.cgi", "reset"), ("end.pl", "html"), ("end.pl", "no_links"),
     ("upload/get_upload_server", "flood"), ("upload.cgi", "truncate"), ("file/rm", "5xx")],
)
async def test_faults_leave_one_good_copy(rig: Rig, emu, autojump_clock, endpoint: str, kind: str) -> None:
    async with rig.mount() as fs:
        await write_file(fs, ROOT_INODE, "f.bin", b"old" * 1000)
        await sync(fs)
        emu.inject(endpoint, kind)
        new = os.urandom(300_000)
        await write_file(fs, ROOT_INODE, "f.bin", new)
        await sync(fs)
        assert fs.status()["writeback"]["failed"] == 0
    files = emu.list_files(0)
    assert [(f["filename"], f["whirlpool"]) for f in files] == [("f.bin", _wp(new))]


async def test_read_after_unlink_of_a_staged_file(rig: Rig, emu, autojump_clock) -> None:
    """unlink while open, before any read: the open handle still reads every byte (POSIX)."""
    data = os.urandom(300_000)
    async with rig.mount() as fs:
        ino = await write_file(fs, ROOT_INODE, "u1", data)  # staged, not uploaded yet
        fh = await fs.open(ino, os.O_RDONLY)
        await fs.unlink(ROOT_INODE, "u1")
        got = bytearray()
        while chunk := await fs.read(fh, len(got), 65536):
            got += chunk
        fs.release(fh)
        assert bytes(got) == data
        await sync(fs)
    assert emu.list_files(0) == []
    assert not any(p.stat().st_size == 0 for p in (rig.cache).rglob("staging/*")), "no empty orphan staging file"


async def test_uploaded_files_read_back_after_remount_with_no_download(rig: Rig, emu, autojump_clock) -> None:
    """Issue 15: the clean copies of just-uploaded files join the on-disk read cache (url + whirlpool), so
    after sync + remount reading them back costs 0 download-link calls and 0 bytes from 1fichier."""
    files = {f"f{i}.bin": os.urandom(n) for i, n in enumerate([0, 1, 4096, 300_000, MiB + 17, 3 * MiB])}
    async with rig.mount() as fs:
        for name, data in files.items():
            await write_file(fs, ROOT_INODE, name, data)
        await sync(fs)
        await trio.sleep(1)  # the copies run in the read side's background tasks
        stats = fs.reader.statistics()
        assert stats["adopted_files"] == len(files) - 1  # an empty file stays local (1fichier refuses it)
        assert stats["adopted_bytes"] == sum(map(len, files.values()))
    async with rig.mount() as fs:
        emu.reset_stats()
        for name, data in files.items():
            node = await fs.lookup(ROOT_INODE, name)
            assert fs.is_local(node.ino)  # the thumbnail policy sees it as local
            assert await read_all(fs, node.ino) == data
        s = emu.stats()
        assert s["calls"]["download/get_token"] == 0 and s["bytes_down"] == 0
        assert fs.reader.statistics()["downloads"] == 0


async def test_meta_answers_attr_alone_through_write_and_upload(rig: Rig, emu, autojump_clock) -> None:
    """Issue 13.4: meta.attr(ino) is the one answer — the staged size while a write is local,
    the times/mode a program set, and the uploaded file's attributes after the upload; vfs's
    getattr is meta's."""
    async with rig.mount() as fs:
        ino = await write_file(fs, ROOT_INODE, "m.bin", b"x" * 1000)
        node = fs.meta.get(ino)
        assert fs.meta.attr(ino) == fs.getattr(ino)
        a = fs.meta.attr(ino)
        assert a.size == 1000 and a.ttl is None and fs.meta.overlay.staged_size(ino) == 1000
        fh = await fs.open(ino, os.O_WRONLY | os.O_APPEND)
        fs.write(fh, 0, b"y" * 24)
        assert fs.meta.attr(ino).size == 1024  # the live staging copy, no second copy to drift
        await fs.flush(fh)
        fs.release(fh)
        await fs.setattr(ino, mtime_ns=1_234_567_890_123_456_789, mode=0o600)
        a = fs.meta.attr(ino)
        assert (a.mtime_ns, a.mode & 0o7777) == (1_234_567_890_123_456_789, 0o600)
        await sync(fs)
        assert fs.meta.overlay.staged_size(ino) is None and node.local_key is None
        a = fs.meta.attr(ino)
        assert a.size == 1024 and a.mtime_ns == 1_234_567_890_123_456_789  # re-keyed to the url
        assert fs.meta.overlay.local(node.key) is not None and node.key.startswith("http")
        await fs.setattr(ino, size=10)  # a truncate stages it again
        assert fs.meta.overlay.staged_size(ino) == 10 and fs.meta.attr(ino).size == 10
        await fs.unlink(ROOT_INODE, "m.bin")
        assert fs.meta.overlay.staged_size(ino) is None


async def test_a_read_handle_opened_before_the_upload_ends_reads_the_bytes(rig: Rig, emu, autojump_clock) -> None:
    """Opened for reading while the file is still local, read after its upload renamed the
    staging copy into a clean copy: the handle still reads the file (found by a flaky
    `cp -r` + `sha256sum` in the mount tier: the read re-created an EMPTY staging file)."""
    data = os.urandom(70_000)
    async with rig.mount() as fs:
        ino = await write_file(fs, ROOT_INODE, "r.bin", data)
        fh = await fs.open(ino, os.O_RDONLY)
        await sync(fs)  # uploaded: staging/<row> is now clean/<n>
        assert fs.meta.overlay.staged_size(ino) is None
        assert await fs.read(fh, 0, len(data) + 10) == data
        fs.release(fh)
        assert await read_all(fs, ino) == data


async def test_cache_disk_full_is_enospc_not_eio(rig: Rig, emu, autojump_clock) -> None:
    """The journal's disk is full (SQLITE_FULL, simulated with max_page_count): writes get ENOSPC (the FUSE
    adapter answered EIO to any other exception), and the journal works again once there is room."""
    async with rig.mount() as fs:
        assert fs.store is not None
        db = fs.store._db
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages}")
        with pytest.raises(FichierError) as e:
            for i in range(200):  # fills the last free pages, then refuses
                await write_file(fs, ROOT_INODE, f"f{i:03}.txt", b"x" * 100)
        assert e.value.errno == errno.ENOSPC
        db.execute("PRAGMA max_page_count = 1073741823")
        await write_file(fs, ROOT_INODE, "after.txt", b"after")
        await sync(fs)
    assert "after.txt" in [f["filename"] for f in emu.list_files(0)]
