"""The namespace-op batcher without FUSE or an API (issue 12.4): which journalled ops become one
call, what waits for what, back-off, and moves folded through a local folder that never existed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fichierfs.errors import ServerError
from fichierfs.nsops import NamespaceOps
from fichierfs.oprecords import Dmv, Mv, Rm, Rmdir
from fichierfs.store import Store


class Client:
    """Records the calls; ``fail`` makes the next call of that name raise."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.fail: set[str] = set()
        self.next_id = 1000

    def _rec(self, name: str, *args: Any, **kw: Any) -> None:
        self.calls.append((name, args, kw))
        if name in self.fail:
            self.fail.discard(name)
            raise ServerError("500 from the fake")

    async def file_rm(self, urls: list[str]) -> int:
        self._rec("file_rm", list(urls))
        return len(urls)

    async def file_mv(self, urls: list[str], dest: int, *, rename: str | None = None) -> None:
        self._rec("file_mv", list(urls), dest, rename=rename)

    async def file_rename(self, pairs: list[tuple[str, str]]) -> tuple[()]:
        self._rec("file_rename", list(pairs))
        return ()

    async def folder_rm(self, fid: int) -> None:
        self._rec("folder_rm", fid)

    async def folder_mv(self, fid: int, **kw: Any) -> None:
        self._rec("folder_mv", fid, **kw)

    async def folder_mkdir(self, parent: int, name: str) -> int:
        self._rec("folder_mkdir", parent, name)
        self.next_id += 1
        return self.next_id


class Sched:
    def __init__(self) -> None:
        self.client = Client()

    async def call(self, fn: Any, *args: Any, lane: Any = None, **kw: Any) -> Any:
        return await fn(*args, **kw)


class Meta:
    def __init__(self) -> None:
        self.hidden: list[str] = []

    def hide_url(self, url: str, until: float = 0.0) -> None:
        self.hidden.append(url)

    def hide_folder(self, fid: int, until: float = 0.0) -> None:
        self.hidden.append(f"d:{fid}")

    def node_for_url(self, url: str) -> None:
        return None

    def node_for_folder(self, fid: int) -> None:
        return None

    def folders_changed(self, folder_ids: Any) -> None:
        self.changed = [*getattr(self, "changed", []), *sorted(folder_ids)]


class Side:
    def __init__(self, tmp: Path) -> None:
        self.store = Store(tmp / "store.db")
        self.meta: Any = Meta()
        self.scheduler: Any = Sched()
        self.settle, self.retry_base, self.retry_max = 300.0, 5.0, 300.0
        self.now = 100.0
        self.deleted_urls: list[str] = []

    def clock(self) -> float:
        return self.now

    def poke(self) -> None:
        pass

    def note_size(self, url: str) -> None:
        pass

    def deleted(self, urls: list[str]) -> None:
        self.deleted_urls += urls


@pytest.fixture
def side(tmp_path: Path) -> Side:
    return Side(tmp_path)


async def _drain(ns: NamespaceOps) -> None:
    for _ in range(50):
        if not await ns.step():
            return
    raise AssertionError("the batcher never stopped")


def _names(side: Side) -> list[str]:
    return [c[0] for c in side.scheduler.client.calls]


async def test_runs_become_one_call_each_in_journal_order(side: Side) -> None:
    s = side.store
    for u in ("a", "b", "c"):
        s.add_op(Rm((u,)))
    s.add_op(Mv("m1", 5, "x1", from_folder=5, old_name="o1"))  # in-place renames: one file/rename
    s.add_op(Mv("m2", 5, "x2", from_folder=5, old_name="o2"))
    s.add_op(Mv("p1", 7, "p1", from_folder=5, old_name="p1"))  # plain moves to one folder: one file/mv
    s.add_op(Mv("p2", 7, "p2", from_folder=6, old_name="p2"))
    s.add_op(Mv("r1", 8, "new", from_folder=5, old_name="old"))  # move + rename: alone
    s.add_op(Rm(("r1",)))  # a delete never goes past an op on the same file
    ns = NamespaceOps(side)
    await _drain(ns)
    calls = side.scheduler.client.calls
    assert calls == [
        ("file_rm", (["a", "b", "c"],), {}),
        ("file_rename", ([("m1", "x1"), ("m2", "x2")],), {}),
        ("file_mv", (["p1", "p2"], 7), {"rename": None}),
        ("file_mv", (["r1"], 8), {"rename": "new"}),
        ("file_rm", (["r1"],), {}),
    ]
    assert ns.op_calls == 5 and s.ops() == [] and side.deleted_urls == ["a", "b", "c", "r1"]


async def test_rm_r_gathers_the_deletes_interleaved_with_folder_removals(side: Side) -> None:
    """`rm -r` journals a folder's deletes, its rmdir, the next folder's deletes…: one file/rm takes
    every delete that no op in between touches (found by the 30-minute soak: the queue fell behind)."""
    s = side.store
    for d in range(10, 40):
        for i in range(3):
            s.add_op(Rm((f"u{d}.{i}",)))
        s.add_op(Rmdir(d))
    s.add_op(Mv("m", 7, "m", from_folder=6, old_name="m"))
    s.add_op(Rm(("m",)))  # after a move of the same file: not gathered past it
    ns = NamespaceOps(side)
    await _drain(ns)
    names = _names(side)
    assert names == ["file_rm", *["folder_rm"] * 30, "file_mv", "file_rm"], names
    assert side.scheduler.client.calls[0][1][0] == [f"u{d}.{i}" for d in range(10, 40) for i in range(3)]
    assert s.ops() == []


async def test_a_waiting_op_blocks_later_ops_on_the_same_objects_only(side: Side) -> None:
    s = side.store
    d = s.new_dir(0, "new")  # a local folder: its mkdir comes first
    s.add_op(Mv("f", d.id, "f", from_folder=0, old_name="f"))  # needs the folder's real id
    s.add_op(Rm(("f",)))  # same file: must wait for the move
    s.add_op(Rm(("g",)))  # unrelated: goes
    side.scheduler.client.fail.add("folder_mkdir")
    ns = NamespaceOps(side)
    assert await ns.step()  # mkdir tried, failed: backs off
    assert await ns.step()
    assert _names(side) == ["folder_mkdir", "file_rm"]
    assert side.scheduler.client.calls[-1][1] == (["g"],)
    assert not await ns.step()  # the rest waits for the folder
    assert s.dir(d.id) is not None and s.dir(d.id).attempts == 1  # type: ignore[union-attr]
    side.now += 10  # past the back-off
    await _drain(ns)
    new_id = side.scheduler.client.next_id
    assert _names(side)[2:] == ["folder_mkdir", "file_mv", "file_rm"]
    assert side.scheduler.client.calls[3][1] == (["f"], new_id)
    assert s.ops() == [] and s.dirs() == []


async def test_rmdir_waits_while_files_upload_into_the_folder(side: Side) -> None:
    s = side.store
    f = s.new_file(42, "x", state="dirty")
    s.add_op(Rmdir(42))
    ns = NamespaceOps(side)
    assert not await ns.step()
    s.delete_file(f.id)
    assert await ns.step()
    assert _names(side) == ["folder_rm"] and "d:42" in side.meta.hidden


async def test_failure_backs_off_and_keeps_the_batch(side: Side) -> None:
    s = side.store
    s.add_op(Rm(("a",)))
    s.add_op(Rm(("b",)))
    side.scheduler.client.fail.add("file_rm")
    ns = NamespaceOps(side)
    assert await ns.step()
    assert [(o.attempts, o.error) for o in s.ops()] == [(1, "500 from the fake")] * 2
    assert not await ns.step()  # backing off
    side.now += 10
    assert await ns.step()
    assert s.ops() == [] and side.scheduler.client.calls[-1] == ("file_rm", (["a", "b"],), {})


async def test_folder_rename_then_move_are_two_calls_and_resume_after_a_failure(side: Side) -> None:
    s = side.store
    s.add_op(Dmv(9, 3, "b", from_parent=2, old_name="a"))
    side.scheduler.client.fail.add("folder_mv")
    ns = NamespaceOps(side)
    await ns.step()  # the rename failed
    side.now += 10
    await ns.step()
    c = side.scheduler.client.calls
    assert c[-2:] == [("folder_mv", (9,), {"rename": "b"}), ("folder_mv", (9,), {"destination_folder_id": 3})]
    assert s.ops() == []


async def test_rmdir_of_a_local_folder_folds_moves_through_it(side: Side) -> None:
    s = side.store
    d = s.new_dir(0, "tmp")
    s.add_op(Mv("f", d.id, "f", from_folder=1, old_name="f0"))  # 1/f0 → tmp/f
    s.add_op(Mv("f", 2, "f2", from_folder=d.id, old_name="f"))  # tmp/f → 2/f2
    s.add_op(Mv("g", d.id, "g", from_folder=1, old_name="g"))   # into tmp, then deleted there
    s.add_op(Rm(("g",)))
    ns = NamespaceOps(side)
    ns.rmdir_local(d.id)
    assert [o.op for o in s.ops()] == [Mv("f", 2, "f2", from_folder=1, old_name="f0"), Rm(("g",))]
    assert s.dirs() == []
