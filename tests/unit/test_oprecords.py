"""Op records: typed journal ops, serialised in one place; rows older versions wrote still read."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fichierfs import oprecords
from fichierfs.oprecords import BadOpRecord, Dmv, Mv, Op, Rm, Rmdir
from fichierfs.store import Store

_ids = st.integers(min_value=-(2**40), max_value=2**40)
_text = st.text(max_size=30)
_ops: st.SearchStrategy[Op] = st.one_of(
    st.builds(Rm, st.lists(_text, max_size=5).map(tuple)),
    st.builds(Mv, _text, _ids, _text, _ids, _text, st.integers(0, 2**50), _text,
              st.floats(0, 2e9, allow_nan=False)),
    st.builds(Rmdir, _ids),
    st.builds(Dmv, _ids, _ids, _text, _ids, _text),
)


@given(_ops)
def test_round_trip(op: Op) -> None:
    kind, text = oprecords.dump(op)
    assert kind == op.kind
    assert oprecords.load(kind, text) == op


# rows exactly as fichierfs wrote them when ops were dicts (Store.add_op(kind, **data))
OLD_ROWS = [
    ("rm", '{"urls": ["https://1fichier.com/?a", "https://1fichier.com/?b"]}',
     Rm(("https://1fichier.com/?a", "https://1fichier.com/?b"))),
    ("mv", '{"url": "https://1fichier.com/?c", "folder_id": -3, "name": "n\\u00e9w", "from_folder": 12, '
           '"old_name": "old", "size": 42, "checksum": "ab12", "date": 1700000000.5}',
     Mv("https://1fichier.com/?c", -3, "néw", from_folder=12, old_name="old", size=42, checksum="ab12",
        date=1700000000.5)),
    # a move journalled without its size/checksum/date (a first version) and ids as strings
    ("mv", '{"url": "u", "folder_id": "7", "name": "x", "from_folder": "0", "old_name": "x"}',
     Mv("u", 7, "x", from_folder=0, old_name="x")),
    ("rmdir", '{"folder_id": 99}', Rmdir(99)),
    ("dmv", '{"folder_id": 5, "parent": -2, "name": "b", "from_parent": 0, "old_name": "a"}',
     Dmv(5, -2, "b", from_parent=0, old_name="a")),
]


@pytest.mark.parametrize(("kind", "text", "op"), OLD_ROWS, ids=lambda x: x if isinstance(x, str) and len(x) < 6 else "")
def test_old_dict_rows_read(kind: str, text: str, op: Op) -> None:
    assert oprecords.load(kind, text) == op
    old = json.loads(text)
    if kind != "mv" or "size" in old:  # a complete old row: today's row is the same dict (a downgrade reads it)
        assert json.loads(oprecords.dump(op)[1]) == old


def test_old_journal_file_is_replayed_by_the_store(tmp_path: Path) -> None:
    """A store.db with dict rows in ``ops`` (written by an older version) reads as typed ops,
    and a local folder's id is rewritten in them when its mkdir lands."""
    s = Store(tmp_path / "store.db")
    s.close()
    db = sqlite3.connect(tmp_path / "store.db")
    db.executemany("INSERT INTO ops (kind, data) VALUES (?, ?)", [(k, t) for k, t, _ in OLD_ROWS])
    db.commit()
    db.close()
    s = Store(tmp_path / "store.db")
    assert [o.op for o in s.ops()] == [op for _, _, op in OLD_ROWS]
    s.resolve_folder(-2, 777)
    assert s.ops()[-1].op == Dmv(5, 777, "b", from_parent=0, old_name="a")
    assert s.ops()[1].op == OLD_ROWS[1][2]  # -3 is another local folder: unchanged


@pytest.mark.parametrize(("kind", "text"), [("mv", '{"url": "u"}'), ("zap", '{"x": 1}'), ("rm", "not json"),
                                            ("rmdir", '{"folder_id": "abc"}'), ("rm", "[1, 2]")])
def test_bad_rows_are_named_not_run(kind: str, text: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(BadOpRecord, match=kind):
        oprecords.load(kind, text)
    s = Store(tmp_path / "store.db")
    s.add_op(Rmdir(1))
    s._x("INSERT INTO ops (kind, data) VALUES (?, ?)", (kind, text))
    with caplog.at_level(logging.ERROR, logger="fichierfs.store"):
        assert [o.op for o in s.ops()] == [Rmdir(1)]
        s.ops()
    assert sum("not run" in r.getMessage() for r in caplog.records) == 1  # said once, not per pass


def test_rebase_and_describe() -> None:
    mv = Mv("u", -4, "n", from_folder=-4, old_name="o")
    assert oprecords.rebase(mv, -4, 10) == Mv("u", 10, "n", from_folder=10, old_name="o")
    assert oprecords.rebase(Rm(("u",)), -4, 10) is None
    assert oprecords.rebase(Rmdir(-5), -4, 10) is None
    assert oprecords.describe(Rm(("u",))) == "rm ['u']" and oprecords.describe(mv) == "mv n"
    with pytest.raises(AttributeError):
        mv.name = "x"  # type: ignore[misc]  # frozen
