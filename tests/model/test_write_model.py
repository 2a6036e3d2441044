"""Model-based test: the vfs (write side + journal) against a dict reference tree.

A hypothesis ``RuleBasedStateMachine`` drives the vfs over the in-process emulator (limits
ON). Rules: write (new / append / mid-file patch), rename (also over a file), unlink, mkdir,
rmdir, a remote change by "another client" (``emu.put_file`` / ``remove_file``), an injected
fault, restart (the mount is torn down like ``kill -9`` and a new one replays the
journal), and a crash in the middle of an upload batch (at one of its steps: before the
POST, after it, after end.pl, before the old copies are deleted). After every step the mount's view (names and contents, no re-list) must equal the
reference; ``check`` also waits for the write-back to drain, re-lists, and requires the
emulator to hold exactly one copy of every file with the right whirlpool.

trio runs in a helper thread with a MockClock (autojump); rules call into it with
``trio.from_thread.run``. Bounded: a few examples of a few steps (< 60 s).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
import trio
import trio.testing
import whirlpool
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from fichierfs import crashpoint
from fichierfs.errors import FichierError
from fichierfs.meta import ROOT_INODE
from tests.core.write_rig import Rig

KEY = "emu-model-key-0123456789"
NAMES = ["a", "b", "c"]
DIRS = ["", "d1", "d2"]  # "" = root
FAULTS = [("upload.cgi", "5xx"), ("upload.cgi", "reset"), ("end.pl", "html"), ("end.pl", "no_links"),
          ("upload/get_upload_server", "flood"), ("file/rm", "5xx"), ("file/rename", "5xx"), ("file/mv", "reset")]


class TrioHost:
    """A trio run in a thread holding the emulator and one mount at a time."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.ready = threading.Event()
        self.token: Any = None
        self.fs: Any = None
        self.emu: Any = None
        self._restart: trio.Event | None = None
        self._stop: trio.Event | None = None
        self._mounted: trio.Event | None = None
        self.error: BaseException | None = None
        self.crashes = 0
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()
        self.ready.wait(60)

    def _main(self) -> None:
        try:
            trio.run(self._run, clock=trio.testing.MockClock(autojump_threshold=0.01))
        except BaseException as exc:  # surfaced by call()
            self.error = exc
            self.ready.set()

    async def _run(self) -> None:
        from fichierfs.emulator import Emulator

        self.token = trio.lowlevel.current_trio_token()
        self.emu = Emulator(self.base / "emu", clock=trio.current_time)
        self._stop = trio.Event()
        rig = Rig(self.emu.transport(), KEY, self.base / "cache", delay=2.0, dir_ttl=1e9)
        while not self._stop.is_set():
            self._restart = trio.Event()
            try:
                async with rig.mount() as fs:
                    self.fs = fs
                    self.ready.set()
                    with trio.CancelScope() as scope:
                        async with trio.open_nursery() as n:

                            async def stop_on() -> None:
                                assert self._stop is not None
                                await self._stop.wait()
                                scope.cancel()

                            n.start_soon(stop_on)
                            assert self._restart is not None
                            await self._restart.wait()
                            scope.cancel()
            except BaseException as exc:  # the armed hook killed the mount mid-batch: remount
                if not (isinstance(exc, Crash) or (isinstance(exc, BaseExceptionGroup)
                                                   and exc.subgroup(lambda e: isinstance(e, Crash)) is not None)):
                    raise
                self.crashes += 1
            self.fs = None
        self.emu.close()

    def call(self, fn: Any, *args: Any) -> Any:
        if self.error is not None:
            raise self.error
        return trio.from_thread.run(fn, *args, trio_token=self.token)

    def call_sync(self, fn: Any, *args: Any) -> Any:
        return trio.from_thread.run_sync(fn, *args, trio_token=self.token)

    def restart(self) -> None:
        self.ready.clear()
        self.call_sync(lambda: self._restart.set())  # type: ignore[union-attr]
        self.ready.wait(60)

    def close(self) -> None:
        self.call_sync(lambda: (self._stop.set(), self._restart.set()))  # type: ignore[union-attr]
        self.thread.join(60)


def _wp(data: bytes) -> str:
    return whirlpool.new(data).hexdigest().lower()


class Crash(BaseException):
    """Raised by the armed crash hook: tears the mount down like kill -9 at that step."""


_ORIGINAL_HIT = crashpoint.hit
CRASHED: list[str] = []  # steps at which a mount was killed (tests/model: the rule is exercised)
CRASH_STEPS = ["before_post", "after_post", "after_end", "before_delete_old"]


class WriteModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="fichierfs-model-"))
        self.host = TrioHost(self.tmp)
        self.ref: dict[str, dict[str, bytes]] = {"": {}}  # dir → name → content
        self.remote_pending: list[tuple[str, str, bytes | None]] = []
        self.remote_urls: dict[str, str] = {}
        self.remote_seq = 0

    def teardown(self) -> None:
        try:
            self.host.close()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # ------------------------------------------------------------------ helpers (trio side)
    async def _dir_ino(self, d: str) -> int:
        fs = self.host.fs
        if not d:
            return ROOT_INODE
        return (await fs.lookup(ROOT_INODE, d)).ino

    async def _view(self) -> dict[str, dict[str, bytes]]:
        fs = self.host.fs
        out: dict[str, dict[str, bytes]] = {}

        async def listing(ino: int) -> list[Any]:
            fh = await fs.opendir(ino)
            try:
                return fs.readdir(fh, 0)
            finally:
                fs.releasedir(fh)

        async def content(ino: int) -> bytes:
            fh = await fs.open(ino, os.O_RDONLY)
            try:
                buf = bytearray()
                while piece := await fs.read(fh, len(buf), 1 << 20):
                    buf += piece
                return bytes(buf)
            finally:
                fs.release(fh)

        root: dict[str, bytes] = {}
        out[""] = root
        for e in await listing(ROOT_INODE):
            if e.attr.mode & 0o040000:
                sub: dict[str, bytes] = {}
                out[e.name] = sub
                for f in await listing(e.attr.ino):
                    sub[f.name] = await content(f.attr.ino)
            else:
                root[e.name] = await content(e.attr.ino)
        return out

    # ------------------------------------------------------------------ rules
    @initialize()
    def start(self) -> None:
        pass

    @rule(d=st.sampled_from(DIRS), name=st.sampled_from(NAMES), data=st.binary(min_size=0, max_size=3000),
          how=st.sampled_from(["new", "append", "patch"]))
    def write(self, d: str, name: str, data: bytes, how: str) -> None:
        if d not in self.ref:
            return
        old = self.ref[d].get(name)

        async def go() -> None:
            fs = self.host.fs
            parent = await self._dir_ino(d)
            if old is None or how == "new":
                fh, _ = await fs.create(parent, name, 0o644, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                off = 0
            else:
                node = await fs.lookup(parent, name)
                flags = os.O_WRONLY | (os.O_APPEND if how == "append" else 0)
                fh = await fs.open(node.ino, flags)
                off = len(old) if how == "append" else min(len(old), 7)
            if data:
                fs.write(fh, off, data)
            await fs.flush(fh)
            fs.release(fh)

        self.host.call(go)
        if old is None or how == "new":
            self.ref[d][name] = data
        elif how == "append":
            self.ref[d][name] = old + data
        else:
            off = min(len(old), 7)
            b = bytearray(old)
            b[off : off + len(data)] = data
            self.ref[d][name] = bytes(b)

    @rule(sd=st.sampled_from(DIRS), sn=st.sampled_from(NAMES), dd=st.sampled_from(DIRS), dn=st.sampled_from(NAMES))
    def rename(self, sd: str, sn: str, dd: str, dn: str) -> None:
        if sd not in self.ref or dd not in self.ref or sn not in self.ref[sd] or (sd, sn) == (dd, dn):
            return

        async def go() -> None:
            await self.host.fs.rename(await self._dir_ino(sd), sn, await self._dir_ino(dd), dn)

        self.host.call(go)
        self.ref[dd][dn] = self.ref[sd].pop(sn)

    @rule(d=st.sampled_from(DIRS), name=st.sampled_from(NAMES))
    def unlink(self, d: str, name: str) -> None:
        if d not in self.ref or name not in self.ref[d]:
            return

        async def go() -> None:
            await self.host.fs.unlink(await self._dir_ino(d), name)

        self.host.call(go)
        del self.ref[d][name]

    @rule(d=st.sampled_from(DIRS[1:]))
    def mkdir(self, d: str) -> None:
        async def go() -> int:
            try:
                await self.host.fs.mkdir(ROOT_INODE, d, 0o755)
                return 0
            except FichierError as exc:
                return exc.errno

        err = self.host.call(go)
        if d in self.ref or d in self.ref[""]:
            assert err == errno.EEXIST
        else:
            assert err == 0
            self.ref[d] = {}

    @rule(d=st.sampled_from(DIRS[1:]))
    def rmdir(self, d: str) -> None:
        if d not in self.ref:
            return

        async def go() -> int:
            try:
                await self.host.fs.rmdir(ROOT_INODE, d)
                return 0
            except FichierError as exc:
                return exc.errno

        err = self.host.call(go)
        if self.ref[d]:
            assert err == errno.ENOTEMPTY
        else:
            assert err == 0
            del self.ref[d]

    @rule(data=st.binary(min_size=1, max_size=500))
    def remote_put(self, data: bytes) -> None:
        self.remote_seq += 1
        name = f"r_{self.remote_seq}"
        self.remote_urls[name] = self.host.call_sync(self.host.emu.put_file, 0, name, data)
        self.remote_pending.append(("put", name, data))

    @precondition(lambda self: bool(self.remote_urls))
    @rule(pick=st.integers(min_value=0, max_value=10))
    def remote_remove(self, pick: int) -> None:
        names = sorted(self.remote_urls)
        name = names[pick % len(names)]
        self.host.call_sync(self.host.emu.remove_file, self.remote_urls.pop(name))
        self.remote_pending.append(("rm", name, None))

    @rule(fault=st.sampled_from(FAULTS))
    def fault(self, fault: tuple[str, str]) -> None:
        self.host.call_sync(self.host.emu.inject, fault[0], fault[1])

    @rule(step=st.sampled_from(CRASH_STEPS), d=st.sampled_from(DIRS),
          data=st.lists(st.binary(min_size=1, max_size=800), min_size=2, max_size=3))
    def crash_mid_batch(self, step: str, d: str, data: list[bytes]) -> None:
        """Write a few files of one folder (one batch) and kill the mount at ``step`` of it."""
        if d not in self.ref:
            return
        fired = []

        def hook(name: str) -> None:
            if name == step and not fired:
                fired.append(name)
                raise Crash(name)

        before = self.host.crashes
        for name, content in zip(NAMES, data):
            self.write(d, name, content, "new")
        # armed once every write is acknowledged (a kill -9 during a write() would make it
        # unacknowledged, which the reference cannot express); the batch leaves seconds later
        crashpoint.hit = hook
        try:

            async def wait_for_it() -> None:
                for _ in range(120):
                    if fired:
                        return
                    await trio.sleep(1)

            self.host.call(wait_for_it)
        finally:
            crashpoint.hit = _ORIGINAL_HIT
        if fired:  # the mount died: wait for the remount that replays the journal
            import time

            deadline = time.monotonic() + 60
            while (self.host.crashes == before or self.host.fs is None) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert self.host.crashes > before and self.host.fs is not None, "no remount after the crash"
            self.host.ready.wait(60)
            CRASHED.append(step)

    @rule()
    def restart(self) -> None:
        self.host.restart()
        if self.remote_pending:
            # a remount serves the persisted listings (issue 13): another client's changes show
            # after a re-list, as `fichierfs refresh` does; without remote changes the persisted
            # view merged with the journal is checked as it is
            async def relist() -> None:
                await trio.sleep(31)  # the per-folder listing window (§4)
                await self.host.fs.meta.refresh(ROOT_INODE)

            self.host.call(relist)
        self._apply_remote()

    @rule()
    def check(self) -> None:
        async def go() -> None:
            fs = self.host.fs
            await fs.writer.wait_drained()
            await trio.sleep(31)  # the per-folder listing window (§4)
            await fs.meta.refresh(ROOT_INODE)

        self.host.call(go)
        self._apply_remote()
        emu = self.host.emu
        remote: dict[str, dict[str, str]] = {"": {}}
        folders = {f["name"]: f["id"] for f in self.host.call_sync(emu.list_folders, 0)}
        for f in self.host.call_sync(emu.list_files, 0):
            assert f["filename"] not in remote[""], f"duplicate {f['filename']}"
            remote[""][f["filename"]] = f["whirlpool"]
        for name, fid in folders.items():
            remote[name] = {}
            for f in self.host.call_sync(emu.list_files, fid):
                assert f["filename"] not in remote[name], f"duplicate {name}/{f['filename']}"
                remote[name][f["filename"]] = f["whirlpool"]
        want = {d: {n: _wp(c) for n, c in files.items() if c} for d, files in self.ref.items()}
        assert remote == want

    def _apply_remote(self) -> None:
        for kind, name, data in self.remote_pending:
            if kind == "put":
                assert data is not None
                self.ref[""][name] = data
            else:
                self.ref[""].pop(name, None)
        self.remote_pending.clear()

    @invariant()
    def view_matches_reference(self) -> None:
        if not hasattr(self, "host") or self.host.fs is None:
            return
        view = self.host.call(self._view)
        want = {d: dict(files) for d, files in self.ref.items()}
        pending = {n for k, n, _ in self.remote_pending}
        for d in (view, want):
            d[""] = {n: c for n, c in d[""].items() if n not in pending}
        assert view == want

    @invariant()
    def meta_attr_matches_the_write_side(self) -> None:
        """meta answers getattr alone (issue 13.4): its staged-size overlay says exactly what the
        writer's staging copies say, for every inode it knows."""
        if not hasattr(self, "host") or self.host.fs is None:
            return

        def compare() -> list[tuple[int, int | None, int | None]]:
            fs = self.host.fs
            meta, writer = fs.meta, fs.writer
            bad = []
            for ino in list(meta._nodes):
                st = writer.staged(ino)
                want, got = (None if st is None else st.size), meta.overlay.staged_size(ino)
                if want != got or (st is not None and meta.attr(ino).size != st.size):
                    bad.append((ino, want, got))
            return bad

        assert self.host.call_sync(compare) == []


WriteModel.TestCase.settings = settings(
    max_examples=int(os.environ.get("FICHIERFS_MODEL_EXAMPLES", "12")),
    stateful_step_count=18,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestWriteModel = WriteModel.TestCase


def test_crash_rule_is_exercised() -> None:
    """The model run above killed at least one mount in the middle of a batch (not a dead rule)."""
    if not CRASHED:
        pytest.skip("run after TestWriteModel (same module); hypothesis drew no crash this time")
    assert set(CRASHED) <= set(CRASH_STEPS)
