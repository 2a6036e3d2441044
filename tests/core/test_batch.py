"""Upload batches over the in-process emulator (limits ON, MockClock): issue 12 items 1–3.

Calls are counted by the emulator; contents checked by 1fichier's whirlpool.
"""

from __future__ import annotations

import os

import pytest
import whirlpool

from fichierfs import crashpoint
from fichierfs.meta import ROOT_INODE
from tests.core.write_rig import Crash, Rig, killed, names, read_all, sync, write_file

UPLOAD_SIDE = ("upload/get_upload_server", "upload.cgi", "end.pl")


@pytest.fixture
def autojump_clock(write_clock):  # noqa: ANN001 - see tests/core/conftest.py
    return write_clock



def _wp(data: bytes) -> str:
    return whirlpool.new(data).hexdigest().lower()


def _upload_calls(emu) -> int:  # noqa: ANN001
    calls = emu.stats()["calls"]
    return sum(int(calls.get(k, 0)) for k in UPLOAD_SIDE)


def _contents(n: int, tag: str) -> dict[str, bytes]:
    return {f"{tag}{i:03d}.txt": f"{tag} {i}\n".encode() * (i + 1) for i in range(n)}


async def test_600_files_in_3_folders_cost_at_most_12_upload_calls(rig: Rig, emu, autojump_clock) -> None:
    want: dict[str, dict[str, bytes]] = {d: _contents(200, d) for d in ("a", "b", "c")}
    async with rig.mount() as fs:
        for d, files in want.items():
            node = await fs.mkdir(ROOT_INODE, d, 0o755)
            for name, data in files.items():
                await write_file(fs, node.ino, name, data)
        await sync(fs)
        assert _upload_calls(emu) <= 12, emu.stats()["calls"]
        assert fs.status()["writeback"]["failed"] == 0
    root = {f["name"]: f["id"] for f in emu.list_folders(0)}
    for d, files in want.items():
        got = {f["filename"]: f["whirlpool"] for f in emu.list_files(root[d])}
        assert got == {n: _wp(b) for n, b in files.items()}


async def test_batch_is_bounded_by_bytes_and_big_files_go_alone(rig: Rig, emu, autojump_clock) -> None:
    async with rig.mount() as fs:
        fs.writer.uploader.batch_bytes = 1 << 20
        emu.reset_stats()
        big = os.urandom(3 << 20)
        await write_file(fs, ROOT_INODE, "big.bin", big)
        smalls = {f"s{i}": os.urandom(300_000) for i in range(6)}  # 1.8 MB: two batches of ≤ 1 MiB
        for n, b in smalls.items():
            await write_file(fs, ROOT_INODE, n, b)
        await sync(fs)
        assert emu.stats()["calls"]["upload.cgi"] == 1 + 2
    got = {f["filename"]: f["whirlpool"] for f in emu.list_files(0)}
    assert got == {"big.bin": _wp(big), **{n: _wp(b) for n, b in smalls.items()}}


async def test_steady_stream_does_not_wait_for_quiet(rig: Rig, emu, autojump_clock) -> None:
    """A file written every second for 60 s: batches leave every ``batch_wait`` s, not at the end."""
    import trio

    async with rig.mount() as fs:
        first_upload_at = None
        t0 = trio.current_time()
        for i in range(60):
            await write_file(fs, ROOT_INODE, f"f{i}", b"x" * (i + 1))
            await trio.sleep(1)
            if first_upload_at is None and emu.stats()["calls"].get("upload.cgi"):
                first_upload_at = trio.current_time() - t0
        await sync(fs)
        assert first_upload_at is not None and first_upload_at < 3 + 10 + 5
        assert emu.stats()["calls"]["upload.cgi"] <= 60 / 10 + 2
    assert len(emu.list_files(0)) == 60


@pytest.mark.parametrize("fault", ["5xx", "reset", "truncate"])
async def test_post_faults_every_member_exactly_once(rig: Rig, emu, autojump_clock, fault: str) -> None:
    files = _contents(40, "m")
    async with rig.mount() as fs:
        emu.inject("upload.cgi", fault)
        for n, b in files.items():
            await write_file(fs, ROOT_INODE, n, b)
        await sync(fs)
        assert fs.status()["writeback"]["failed"] == 0
    got = sorted((f["filename"], f["whirlpool"]) for f in emu.list_files(0))
    assert got == sorted((n, _wp(b)) for n, b in files.items())


@pytest.mark.parametrize("endpoint,fault", [("end.pl", "html"), ("end.pl", "no_links"),
                                             ("upload/get_upload_server", "flood")])
async def test_report_faults_every_member_exactly_once(rig: Rig, emu, autojump_clock, endpoint: str,
                                                       fault: str) -> None:
    files = _contents(30, "r")
    async with rig.mount() as fs:
        emu.inject(endpoint, fault)
        for n, b in files.items():
            await write_file(fs, ROOT_INODE, n, b)
        await sync(fs)
        assert fs.status()["writeback"]["failed"] == 0
        assert emu.stats()["calls"]["upload.cgi"] == 1  # never re-sent: found by end.pl or the listing
    got = sorted((f["filename"], f["whirlpool"]) for f in emu.list_files(0))
    assert got == sorted((n, _wp(b)) for n, b in files.items())


async def test_report_missing_members_are_found_or_resent_alone(rig: Rig, emu, autojump_clock,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """end.pl lists fewer links than members: the listing finds those that landed, none twice."""
    files = _contents(10, "p")
    async with rig.mount() as fs:
        sched = fs.writer.scheduler
        real = sched.call

        async def short_report(fn, *args, **kw):  # noqa: ANN001, ANN202
            out = await real(fn, *args, **kw)
            if fn == sched.client.upload_end:
                return out[:-3]
            return out

        monkeypatch.setattr(sched, "call", short_report)
        for n, b in files.items():
            await write_file(fs, ROOT_INODE, n, b)
        await sync(fs)
        assert emu.stats()["calls"]["upload.cgi"] == 1
    got = sorted((f["filename"], f["whirlpool"]) for f in emu.list_files(0))
    assert got == sorted((n, _wp(b)) for n, b in files.items())


async def test_member_rewritten_or_unlinked_in_flight(rig: Rig, emu, autojump_clock,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The POST sends a stable snapshot; the newer content follows; an unlinked member goes."""
    async with rig.mount() as fs:
        wb = fs.writer
        keep = await write_file(fs, ROOT_INODE, "keep", b"k" * 1000)
        rw = await write_file(fs, ROOT_INODE, "rewritten", b"old" * 1000)
        await write_file(fs, ROOT_INODE, "gone", b"g" * 1000)
        done = False

        def during_post(step: str) -> None:
            nonlocal done
            if step == "before_post" and not done:
                done = True
                st = wb.staged(rw)
                wb.truncate(st, 0)
                wb.write(st, 0, b"NEW" * 2000)
                wb._nursery.start_soon(wb.flush, st)  # as the kernel's flush would
                wb._nursery.start_soon(fs.unlink, ROOT_INODE, "gone")

        monkeypatch.setattr(crashpoint, "hit", during_post)
        await sync(fs)
        assert done
        assert await read_all(fs, rw) == b"NEW" * 2000
        assert await names(fs) == ["keep", "rewritten"]
        assert await read_all(fs, keep) == b"k" * 1000
    got = sorted((f["filename"], f["whirlpool"]) for f in emu.list_files(0))
    assert got == [("keep", _wp(b"k" * 1000)), ("rewritten", _wp(b"NEW" * 2000))]


@pytest.mark.parametrize("forget_end_pl", [False, True], ids=["end.pl-kept", "end.pl-gone"])
@pytest.mark.parametrize("step", ["before_post", "after_post", "after_end", "before_delete_old"])
async def test_kill_during_a_batch_then_remount(rig: Rig, emu, autojump_clock, monkeypatch: pytest.MonkeyPatch,
                                                step: str, forget_end_pl: bool) -> None:
    old = {f"o{i}": b"old %d\n" % i * 100 for i in range(5)}
    new = {n: os.urandom(20_000 + i) for i, n in enumerate([*old, "n1", "n2", "n3"])}
    async with rig.mount() as fs:
        for n, b in old.items():
            await write_file(fs, ROOT_INODE, n, b)
        await sync(fs)

    def crash_at(name: str) -> None:
        if name == step:
            raise Crash(name)

    monkeypatch.setattr(crashpoint, "hit", crash_at)
    with killed():
        async with rig.mount() as fs:
            for n, b in new.items():
                await write_file(fs, ROOT_INODE, n, b)
            await sync(fs)
    monkeypatch.setattr(crashpoint, "hit", lambda name: None)
    if forget_end_pl:
        emu._uploads.clear()
    emu.reset_stats()
    async with rig.mount() as fs:
        assert await names(fs) == sorted(new)
        await sync(fs)
        assert fs.status()["writeback"]["pending"] == 0
        if step != "before_post":
            assert emu.stats()["calls"].get("upload.cgi", 0) == 0  # never sent twice
    got = sorted((f["filename"], f["whirlpool"]) for f in emu.list_files(0))
    assert got == sorted((n, _wp(b)) for n, b in new.items())


async def test_a_refused_name_is_reported_and_never_blocks_the_others(rig: Rig, emu, autojump_clock,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A name 1fichier refuses (sent unencoded here) fails its batch as a whole: the batch is
    halved until the bad file is alone; it is then reported as refused, not pending, and the
    others arrive. A rename makes it upload."""
    import fichierfs.uploader as up

    real = up.encode
    monkeypatch.setattr(up, "encode", lambda n: n if "\u00b4" in n else real(n))
    files = _contents(16, "q")
    async with rig.mount() as fs:
        for n, b in files.items():
            await write_file(fs, ROOT_INODE, n, b)
        await write_file(fs, ROOT_INODE, "bad\u00b4name", b"refused")
        await sync(fs)  # returns: the refused file is not pending
        wb = fs.status()["writeback"]
        assert wb["pending"] == 0
        assert [r["path"] for r in wb["refused"]] == ["/bad\u00b4name"]
        assert "name" in wb["refused"][0]["error"]
        assert await names(fs) == sorted([*files, "bad\u00b4name"])  # kept locally
        assert emu.stats()["calls"]["upload.cgi"] <= 12
        monkeypatch.setattr(up, "encode", real)
        await fs.rename(ROOT_INODE, "bad\u00b4name", ROOT_INODE, "good")
        await sync(fs)
        assert fs.status()["writeback"]["refused"] == []
    got = sorted(f["filename"] for f in emu.list_files(0))
    assert got == sorted([*files, "good"])


async def test_a_batch_ends_in_one_journal_commit(rig: Rig, emu, autojump_clock) -> None:
    """complete_batch: every member's end (row deleted, old copy queued for deletion, moved
    member moved) is journalled in ONE transaction, then the files follow."""
    async with rig.mount() as fs:
        wb = fs.writer
        old = b"old copy\n"
        await write_file(fs, ROOT_INODE, "f000.txt", old)
        await sync(fs)
        want = _contents(40, "f")
        for name, data in want.items():
            await write_file(fs, ROOT_INODE, name, data)  # f000.txt overwrites the uploaded copy
        seen: list[tuple[int, int]] = []
        real = wb.complete_batch

        def counted(done, **kw) -> None:  # noqa: ANN001
            before = wb.store.commits
            real(done, **kw)
            seen.append((len(done), wb.store.commits - before))

        wb.complete_batch = counted  # type: ignore[method-assign]
        await sync(fs)
        assert seen == [(40, 1)], seen
        assert fs.status()["writeback"]["pending"] == 0
    got = {f["filename"]: f["whirlpool"] for f in emu.list_files(0)}
    assert got == {n: _wp(b) for n, b in want.items()}  # the old f000.txt deleted, no duplicate
