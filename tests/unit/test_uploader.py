"""Uploader batch forming without FUSE or an API (issue 12.4): bounds, big files alone, unique
names, halving after a refusal, and the leave rules (full / quiet / waited long enough)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fichierfs.backoff import backoff
from fichierfs.store import FileRow
from fichierfs.uploader import LINGER, Uploader


@dataclass
class St:
    path: Path
    size: int = 0
    writers: int = 0
    dirty: bool = False
    due: float = 0.0
    inflight: bool = False
    cowed: bool = False


@dataclass
class FakeStore:
    rows: list[FileRow] = field(default_factory=list)

    def files(self) -> list[FileRow]:
        return list(self.rows)


class FakeWB:
    def __init__(self, tmp: Path) -> None:
        self.store: Any = FakeStore()
        self.meta: Any = None
        self.scheduler: Any = None
        self.by_row: dict[int, St] = {}
        self.retry_base, self.retry_max = 5.0, 300.0
        self.now = 100.0
        self.tmp = tmp

    def clock(self) -> float:
        return self.now

    def poke(self) -> None:
        pass

    def staging_path(self, row: int) -> Path:
        return self.tmp / str(row)

    def snapshot_path(self, row: int) -> Path:
        return self.tmp / f"{row}.sent"

    def drop_snapshot(self, row: int) -> None:
        self.snapshot_path(row).unlink(missing_ok=True)

    def complete_batch(self, done: list[tuple[FileRow, Any]], *, started: float | None = None) -> None:
        pass

    def add(self, rid: int, name: str, size: int, *, folder: int = 7, due: float = 90.0, writers: int = 0) -> None:
        self.store.rows.append(FileRow(rid, folder, name, size=size, state="dirty"))
        p = self.tmp / str(rid)
        p.write_bytes(b"x" * size)
        self.by_row[rid] = St(p, size, writers=writers, due=due)


class Nursery:
    def __init__(self) -> None:
        self.started: list[Any] = []

    def start_soon(self, fn: Any, *args: Any) -> None:
        self.started.append(args[0])


def _up(wb: FakeWB, **kw: Any) -> Uploader:
    return Uploader(wb, **{"max_uploads": 8, "batch_bytes": 1000, "batch_wait": 10.0, **kw})  # type: ignore[arg-type]


def test_split_bounds_by_count_and_bytes_big_files_alone_unique_names(tmp_path: Path) -> None:
    wb = FakeWB(tmp_path)
    up = _up(wb, batch_files=3)
    rows = [FileRow(i, 7, f"f{i}", size=100) for i in range(7)]
    for r in rows:
        wb.by_row[r.id] = St(tmp_path / str(r.id), 100)
    rows.append(FileRow(50, 7, "big", size=5000))
    wb.by_row[50] = St(tmp_path / "50", 5000)
    rows.append(FileRow(51, 7, "f0", size=10))  # same name as row 0: never in the same batch
    wb.by_row[51] = St(tmp_path / "51", 10)
    got = [([r.id for r in b], full) for b, full in up._split(rows)]
    assert ([50], True) in got
    batches = [ids for ids, _ in got]
    assert all(len(b) <= 3 for b in batches)
    assert sorted(i for b in batches for i in b) == sorted([*range(7), 50, 51])
    assert not any(0 in b and 51 in b for b in batches)
    up2 = _up(wb, batch_files=500)
    sizes = [sum(wb.by_row[i].size for i in b) for b, _ in ((x, y) for x, y in ((
        [r.id for r in b], f) for b, f in up2._split([r for r in rows if r.id != 50])))]
    assert all(s <= 1000 for s in sizes)


def test_halved_caps_after_a_refusal(tmp_path: Path) -> None:
    wb = FakeWB(tmp_path)
    up = _up(wb)
    rows = [FileRow(i, 7, f"f{i}", size=10) for i in range(8)]
    for r in rows:
        wb.by_row[r.id] = St(tmp_path / str(r.id), 10)
    from fichierfs.errors import UploadFailed

    up._failed(rows, UploadFailed("upload.cgi: HTTP 200: refused"), whole_batch=True)
    assert all(up.cap[r.id] == 4 for r in rows)
    assert all(len(b) <= 4 for b, _ in up._split(rows))


@pytest.mark.parametrize("case", ["quiet", "more_coming", "waited"])
def test_leave_rules(tmp_path: Path, case: str) -> None:
    wb = FakeWB(tmp_path)
    up = _up(wb)
    wb.add(1, "a", 10, due=wb.now - 5)
    wb.add(2, "b", 10, due=wb.now - LINGER - 0.5)
    if case in ("more_coming", "waited"):
        wb.add(3, "c", 10, due=wb.now + 2)  # closed a moment ago: more of this folder is coming
    if case == "waited":
        wb.by_row[1].due = wb.now - 11  # waited longer than batch_wait
    n = Nursery()
    wait = up.start_due(n)  # type: ignore[arg-type]
    if case == "more_coming":
        assert n.started == [] and 0 < wait <= 10
    else:
        assert len(n.started) == 1 and sorted(m.row.id for m in n.started[0].members) == [1, 2]
        for b in list(up.batches):
            up._close(b)


def test_no_batch_while_a_member_is_written(tmp_path: Path) -> None:
    wb = FakeWB(tmp_path)
    up = _up(wb)
    wb.add(1, "a", 10, due=wb.now - 50)
    wb.add(2, "b", 10, due=math.inf, writers=1)
    n = Nursery()
    up.start_due(n)  # type: ignore[arg-type]
    assert len(n.started) == 1 and [m.row.id for m in n.started[0].members] == [1]  # waited > batch_wait
    for b in list(up.batches):
        up._close(b)


def test_backoff_is_one_formula() -> None:
    assert [backoff(n, 5.0, 300.0) for n in (0, 1, 2, 3, 7, 100)] == [0.0, 5.0, 10.0, 20.0, 300.0, 300.0]
