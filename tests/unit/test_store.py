"""The SQLite journal: durable rows, folder-id resolution, attribute re-keying."""

from __future__ import annotations

from pathlib import Path

import pytest

from fichierfs.oprecords import Mv, Rm
from fichierfs.store import Store


def test_rows_survive_reopen(tmp_path: Path) -> None:
    s = Store(tmp_path / "s.db")
    f = s.new_file(0, "a.txt", state="dirty", replaces=["https://1fichier.com/?old"])
    s.update_file(f.id, state="posting", host="up1.example", xid="abcdefghij", sent_gen=1, sent_folder=0,
                  sent_name="a.txt", size=5)
    s.add_op(Rm(("https://1fichier.com/?x",)))
    s.set_attrs("local:1", mtime_ns=1_600_000_000_123_456_789, mode=0o600)
    s.close()
    s = Store(tmp_path / "s.db")  # like a remount after kill -9: only committed data is there
    [row] = s.files()
    assert (row.state, row.host, row.xid, row.size, row.replaces) == ("posting", "up1.example", "abcdefghij", 5,
                                                                      ["https://1fichier.com/?old"])
    assert [o.kind for o in s.ops()] == ["rm"]
    a = s.get_attrs("local:1")
    assert a is not None and a.mtime_ns == 1_600_000_000_123_456_789 and a.mode == 0o600
    assert s.journal_size() == 2


def test_resolve_folder_rewrites_every_reference(tmp_path: Path) -> None:
    s = Store(tmp_path / "s.db")
    d = s.new_dir(0, "new")
    e = s.new_dir(d.id, "inner")
    assert d.id < 0 and e.id < d.id
    f = s.new_file(d.id, "x", state="dirty")
    s.add_op(Mv("u", d.id, "y", from_folder=0, old_name="y"))
    s.set_attrs(f"d:{d.id}", mode=0o700)
    s.resolve_folder(d.id, 4242)
    assert s.dir(d.id) is None and s.dir(e.id).parent == 4242  # type: ignore[union-attr]
    assert s.file(f.id).folder_id == 4242  # type: ignore[union-attr]
    assert s.ops()[0].op == Mv("u", 4242, "y", from_folder=0, old_name="y")
    assert s.get_attrs("d:4242").mode == 0o700  # type: ignore[union-attr]


def test_rollback_on_error(tmp_path: Path) -> None:
    s = Store(tmp_path / "s.db")
    with pytest.raises(RuntimeError):
        with s.transaction():
            s.add_op(Rm(("a",)))
            raise RuntimeError
    assert s.ops() == []
