"""fichierfs.attrshare over the host budget file: an mtime/mode set on one mount's store reaches another's."""

from __future__ import annotations

from pathlib import Path

import trio

from fichierfs.attrshare import AttrShare
from fichierfs.budget import HostBudget, namespace
from fichierfs.store import Store

URL = "https://1fichier.com/?abcdef"


async def test_attributes_travel_between_two_stores(tmp_path: Path) -> None:
    ns = namespace("http://127.0.0.1:1/v1")
    sa, sb = Store(tmp_path / "a" / "store.db"), Store(tmp_path / "b" / "store.db")
    ha, hb = HostBudget(tmp_path / "h.sqlite3", ns), HostBudget(tmp_path / "h.sqlite3", ns)
    seen: list[str] = []
    a = AttrShare(sa, ha, period=0.05)
    b = AttrShare(sb, hb, period=0.05, on_applied=seen.append)
    async with trio.open_nursery() as n:
        await n.start(a.run)
        await n.start(b.run)
        sa.set_attrs(URL, mtime_ns=981173106789000000, mode=0o600, ctime_ns=5)
        sa.set_attrs("local:7", mtime_ns=1)  # not uploaded yet: no shared identity
        with trio.fail_after(5):
            while sb.get_attrs(URL) is None:
                await trio.sleep(0.02)
        await trio.sleep(0.2)
        n.cancel_scope.cancel()
    got = sb.get_attrs(URL)
    assert got is not None and got.mtime_ns == 981173106789000000 and got.mode == 0o600
    assert got.ctime_ns is None  # ctime stays local
    assert sb.get_attrs("local:7") is None
    assert seen == [URL]  # the mount drops the kernel's cached attributes of that file
    assert sa.get_attrs(URL).mode == 0o600 and a.statistics()["published"] == 1 and b.statistics()["applied"] == 1
    sa.close()
    sb.close()
