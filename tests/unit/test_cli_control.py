"""The CLI's desktop/system side without FUSE: helper translation, sd_notify, status/sync
rendering fed fake documents, keyring login/logout, logging, the README options table."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from fichierfs import cli
from fichierfs.api import Secret
from fichierfs.config import option_table
from fichierfs.control import Backlog, fichierfs_mounts, human_bytes, render_status, summarize, wait_drained
from fichierfs.errors import ConfigError
from fichierfs.keys import delete_api_key, load_api_key, read_key_file, store_api_key
from fichierfs.log import JournalFormatter, RedactingFilter, api_error_line, parse_levels, setup_logging
from fichierfs.storm import ProcessPolicy

ROOT = Path(__file__).resolve().parents[2]

FAKE = {
    "api": {"calls": {"folder/ls": 12, "download/get_token": 40}, "errors": {"download/get_token": 1},
            "breaker": "open", "breaker_closes_in": 42.0, "breaker_opens": 1, "calls_left_this_minute": 3,
            "next_call_in": 1.5, "queued": {"interactive": 2}},
    "meta": {"inodes": 300, "folders_listed": 5},
    "reader": {"token_calls": 40, "downloaded_bytes": 123456789, "cache": {"cached_bytes": 1 << 20, "budget": 256 << 20}},
    "writeback": {"pending": 3, "pending_bytes": 50_000_000,
                  "uploading": [{"path": "/a/big.iso", "bytes_done": 10_000_000, "size": 40_000_000}],
                  "uploaded_files": 7, "uploaded_bytes": 9_000_000, "rate": 2_000_000.0, "failed": 1,
                  "errors": [{"path": "/x.txt", "error": "upload.cgi: HTTP 503", "attempts": 3}], "journal": 4},
}


# ---------------------------------------------------------------- mount(8) helper

def test_helper_translates_fstab_options() -> None:
    argv, fake = cli.helper_to_argv(["fichierfs#/Photos", "/mnt/1f", "-o",
                                     "rw,_netdev,nofail,dev,suid,api_key_file=/etc/fichierfs/key,memory_budget=512M"])
    assert not fake
    assert argv == ["mount", "--api-key-file", "/etc/fichierfs/key", "--memory-budget", "512M",
                    "--remote-folder", "/Photos", "/mnt/1f"]
    parsed = cli.build_parser().parse_args(argv)
    opts = cli._options(parsed)
    assert opts.memory_budget == 512 << 20 and opts.remote_folder == "/Photos"


@pytest.mark.parametrize(("source", "folder"), [("fichierfs", "/"), ("/Docs/x", "/Docs/x"), ("fichierfs:/A", "/A"),
                                                ("1fichier", "/"), ("Music", "/Music")])
def test_helper_sources(source: str, folder: str) -> None:
    argv, _ = cli.helper_to_argv([source, "/m", "-o", "ro"])
    assert argv[argv.index("--remote-folder") + 1] == folder and "--read-only" in argv


def test_helper_refuses_unknown_options_by_name_unless_sloppy(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="frobnicate"):
        cli.helper_to_argv(["fichierfs", "/m", "-o", "frobnicate=1"])
    argv, _ = cli.helper_to_argv(["fichierfs", "/m", "-s", "-o", "frobnicate=1"])
    assert "frobnicate" not in " ".join(argv)
    assert "frobnicate" in capsys.readouterr().err
    assert cli.mount_helper(["fichierfs", "/m", "-o", "frobnicate=1"]) == 1
    assert "unknown mount option -o frobnicate" in capsys.readouterr().err


def test_helper_fake_mode_checks_only(tmp_path: Path) -> None:
    assert cli.mount_helper(["fichierfs", str(tmp_path), "-f", "-o", "memory_budget=1G"]) == 0
    assert cli.mount_helper(["fichierfs", str(tmp_path), "-f", "-o", "memory_budget=lots"]) == 1


def test_main_recognises_mount_fuse3_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    monkeypatch.setattr(cli, "mount_helper", lambda argv: seen.append(argv) or 0)
    assert cli.main(["/Photos", "/mnt/1f", "-o", "rw,dev,suid"]) == 0
    assert seen == [["/Photos", "/mnt/1f", "-o", "rw,dev,suid"]]
    assert not cli._is_helper_call(["mount", "/x", "-o", "ro"])
    assert not cli._is_helper_call(["status", "/x"])


def test_every_subcommand_has_help() -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, type(parser._subparsers._group_actions[0])))
    for name, p in sub.choices.items():
        if name == "emulator":
            continue
        assert p.description, name
        text = p.format_help()
        for action in p._actions:
            if action.dest != "help":
                assert action.help, f"{name}: {action.dest} has no help"
        assert "usage:" in text
    assert "keyring" in parser.format_help() and "umount --wait" in parser.format_help()


def test_mount_fichierfs_console_script_is_declared() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    assert '"mount.fichierfs" = "fichierfs.cli:mount_helper"' in text


# ---------------------------------------------------------------- sd_notify

def test_sd_notify_sends_a_datagram(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind(str(path))
        assert cli.sd_notify("READY=1\nSTATUS=x", {"NOTIFY_SOCKET": str(path)})
        assert srv.recv(4096) == b"READY=1\nSTATUS=x"
    assert not cli.sd_notify("READY=1", {})
    assert not cli.sd_notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "absent")})


def test_sd_notify_abstract_socket() -> None:
    name = f"fichierfs-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind("\0" + name)
        assert cli.sd_notify("READY=1", {"NOTIFY_SOCKET": "@" + name})
        assert srv.recv(100) == b"READY=1"


# ---------------------------------------------------------------- status and sync, fed fake documents

def _render(doc: dict, **kw) -> str:
    console = Console(file=io.StringIO(), width=120, color_system=None)
    console.print(render_status(doc, "/mnt/1f", **kw))
    return console.file.getvalue()


def test_status_renders_everything_a_person_needs() -> None:
    out = _render(FAKE)
    assert "3 file(s), 47.7 MiB to upload" in out
    assert "/a/big.iso" in out and "1fichier had a server error" in out  # in a person's words (issue 11.7)
    assert re.search(r"download/get_token\s+40\s+1", out)
    assert "flood lock: resumes in 42 s" in out and "calls left this minute" in out
    assert "117.7 MiB" in out  # downloaded


def test_status_without_writeback_means_nothing_pending() -> None:
    doc = {k: v for k, v in FAKE.items() if k != "writeback"}
    assert Backlog.of(doc).drained
    out = _render(doc)
    assert "nothing to upload" in out and "Uploads" not in out
    s = summarize(doc)
    assert s["pending"] == 0 and s["api_calls"] == 52 and s["breaker"] == "open"
    assert "All counters" in _render(doc, verbose=True)


def test_backlog_tolerates_junk() -> None:
    b = Backlog.of({"writeback": {"pending": "x", "uploading": ["junk", {"path": "a", "bytes_done": 5}], "rate": None}})
    assert b.pending == 0 and len(b.uploading) == 1 and b.in_flight_bytes == 5 and not b.drained
    assert human_bytes(1536) == "1.5 KiB" and human_bytes(None) == "-" and human_bytes(12) == "12 B"


def test_sync_returns_at_once_when_nothing_is_pending() -> None:
    calls = []

    def fetch() -> dict:
        calls.append(1)
        return {"api": {}}

    b = wait_drained(fetch, console=Console(file=io.StringIO()), sleep=lambda s: pytest.fail("slept"))
    assert b.drained and len(calls) == 1


def test_sync_polls_until_drained_with_progress() -> None:
    docs = [
        {"writeback": {"pending": 2, "pending_bytes": 300, "uploading": [{"path": "/a", "bytes_done": 0, "size": 100}],
                       "uploaded_files": 5, "uploaded_bytes": 1000}},
        {"writeback": {"pending": 1, "pending_bytes": 200, "uploading": [{"path": "/b", "bytes_done": 50, "size": 200}],
                       "uploaded_files": 6, "uploaded_bytes": 1100, "rate": 100.0,
                       "errors": [{"path": "/b", "error": "HTTP 503", "attempts": 1}]}},
        {"writeback": {"pending": 0, "pending_bytes": 0, "uploading": [], "uploaded_files": 7, "uploaded_bytes": 1300}},
    ]
    it = iter(docs)
    sleeps: list[float] = []
    buf = io.StringIO()
    b = wait_drained(lambda: next(it), console=Console(file=buf, width=120, color_system=None), sleep=sleeps.append,
                     interval=0.25)
    assert b.drained and b.uploaded_files == 7 and sleeps == [0.25, 0.25]
    out = buf.getvalue()
    assert "/b: 1fichier had a server error" in out and "kept, retried" in out
    assert "2/2" in out  # files done / files in this sync


def test_sync_times_out() -> None:
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    doc = {"writeback": {"pending": 1, "pending_bytes": 10}}
    b = wait_drained(lambda: doc, console=Console(file=io.StringIO()), sleep=sleep, clock=lambda: now[0],
                     timeout=2.0, interval=0.5)
    assert not b.drained and now[0] == 2.0


def test_status_cli_json_and_table(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                   tmp_path: Path) -> None:
    import fichierfs.control as control

    monkeypatch.setattr(control, "read_status", lambda p: FAKE)
    assert cli.main(["status", "--json", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["writeback"]["pending"] == 3
    assert cli.main(["status", str(tmp_path)]) == 0
    assert "to upload" in capsys.readouterr().out


def test_refresh_recursive_says_first_that_it_takes_minutes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """It answers only once every listing is made (~3.5 s each): it says so before, on stderr."""
    import fichierfs.control as control

    sent: list[str] = []
    monkeypatch.setattr(control, "send_control", lambda p, c: sent.append(c) or {"listings": 80})
    assert cli.main(["refresh", "-r", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert sent == ["refresh-recursive"] and "one listing per ~3.5 s" in out.err
    assert "refreshed (80 listing(s))" in out.out
    assert cli.main(["refresh", str(tmp_path)]) == 0
    assert capsys.readouterr().err == ""


def test_a_mount_that_cannot_connect_names_the_address() -> None:
    from fichierfs.config import Options
    from fichierfs.errors import ServerError

    text = cli._mount_failure(ServerError("user/info: connection failed (ConnectError)"),
                              Options(api_url="http://127.0.0.1:1/v1"))
    assert text.startswith("http://127.0.0.1:1/v1 could not be reached") and "ConnectError" in text


def test_sync_cli_with_fake_documents(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import fichierfs.control as control

    docs = iter([{"writeback": {"pending": 1, "pending_bytes": 5}}, {"writeback": {"pending": 0}}])
    monkeypatch.setattr(control, "read_status", lambda p: next(docs))
    monkeypatch.setattr(control.time, "sleep", lambda s: None)
    assert cli.main(["sync", "-q", str(tmp_path)]) == 0


def test_plain_umount_says_pending_uploads_are_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import fichierfs.control as control
    import fichierfs.mount as mount

    monkeypatch.setattr(control, "read_status", lambda p: FAKE)
    mounted = [True]
    monkeypatch.setattr(mount, "is_mounted", lambda p: mounted[0])
    ran = []

    def fake_run(cmd, **kw):
        ran.append(cmd)
        mounted[0] = False
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(cli.subprocess, "run", fake_run)
    assert cli.main(["umount", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "3 file(s) (47.7 MiB) not uploaded yet" in err and "next mount" in err
    assert ran and ran[0][:2] == ["fusermount3", "-u"]


def test_umount_wait_drains_first(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import fichierfs.control as control
    import fichierfs.mount as mount

    docs = iter([{"writeback": {"pending": 1, "pending_bytes": 5}}, {"writeback": {"pending": 0}}])
    order = []
    monkeypatch.setattr(control, "read_status", lambda p: order.append("status") or next(docs))
    monkeypatch.setattr(control.time, "sleep", lambda s: None)
    monkeypatch.setattr(mount, "is_mounted", lambda p: "unmount" not in order)
    monkeypatch.setattr(cli.subprocess, "run",
                        lambda cmd, **kw: order.append("unmount") or subprocess.CompletedProcess(cmd, 0, "", ""))
    assert cli.main(["umount", "--wait", str(tmp_path)]) == 0
    assert order == ["status", "status", "unmount"]


def test_fichierfs_mounts_parses_proc_mounts(tmp_path: Path) -> None:
    f = tmp_path / "mounts"
    f.write_text("fichierfs /mnt/1f fuse.fichierfs ro 0 0\n/dev/sda1 / ext4 rw 0 0\n"
                 "fichierfs /mnt/with\\040space fuse.fichierfs rw 0 0\n")
    assert fichierfs_mounts(str(f)) == [Path("/mnt/1f"), Path("/mnt/with space")]


# ---------------------------------------------------------------- keys

@pytest.fixture
def memory_keyring():
    import keyring
    from keyring.backend import KeyringBackend
    from keyring.errors import PasswordDeleteError

    class Mem(KeyringBackend):
        priority = 1  # type: ignore[assignment]
        store: dict = {}

        def get_password(self, service, username):
            return self.store.get((service, username))

        def set_password(self, service, username, password):
            self.store[(service, username)] = password

        def delete_password(self, service, username):
            if self.store.pop((service, username), None) is None:
                raise PasswordDeleteError("none")

    old = keyring.get_keyring()
    keyring.set_keyring(Mem())
    try:
        yield Mem.store
    finally:
        keyring.set_keyring(old)


def test_login_logout_roundtrip(memory_keyring, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("FICHIER_API_KEY", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO("emu-login-secret-42\n"))
    assert cli.main(["login"]) == 0
    out = capsys.readouterr()
    assert "emu-login-secret-42" not in out.out + out.err and "stored" in out.err
    assert memory_keyring[("fichierfs", "api-key")] == "emu-login-secret-42"
    assert load_api_key().reveal() == "emu-login-secret-42"
    assert cli.main(["logout"]) == 0
    assert cli.main(["logout"]) == 1
    with pytest.raises(ConfigError, match="fichierfs login"):
        load_api_key()


def test_login_refuses_junk(memory_keyring) -> None:
    with pytest.raises(ConfigError):
        store_api_key(Secret("two words"))
    assert not memory_keyring


def test_no_keyring_backend_gives_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    import keyring
    from keyring.backends.fail import Keyring as Fail

    old = keyring.get_keyring()
    keyring.set_keyring(Fail())
    try:
        with pytest.raises(ConfigError, match="api-key-file"):
            store_api_key(Secret("emu-x"))
        with pytest.raises(ConfigError, match="no usable system keyring on this machine") as raised:
            delete_api_key()
        assert "NoKeyringError" not in str(raised.value)  # logout says what login says
    finally:
        keyring.set_keyring(old)


def test_key_file_must_be_a_private_regular_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="regular file"):
        read_key_file(tmp_path)
    f = tmp_path / "k"
    f.write_text("emu-k\n")
    for mode in (0o640, 0o604, 0o660):
        f.chmod(mode)
        with pytest.raises(ConfigError, match="chmod 600"):
            read_key_file(f)
    f.chmod(0o400)
    assert read_key_file(f).reveal() == "emu-k"


# ---------------------------------------------------------------- logging

def test_levels_per_module() -> None:
    assert parse_levels("warning,fichierfs.scheduler=debug,fichierfs.reader=ERROR") == (
        "warning", {"fichierfs.scheduler": "debug", "fichierfs.reader": "error"})
    with pytest.raises(ValueError, match="loud"):
        parse_levels("loud")


def test_bad_log_level_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FICHIER_API_KEY", "emu-x")
    assert cli.main(["mount", "--log-level", "chatty", str(tmp_path)]) == 2
    assert "chatty" in capsys.readouterr().err


def test_setup_logging_file_and_module_levels(tmp_path: Path) -> None:
    log = tmp_path / "f.log"
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        setup_logging("warning,fichierfs.test_mod=debug", log, secrets=["emu-super-secret"])
        logging.getLogger("fichierfs.test_mod").debug("key %s url %s", "emu-super-secret",
                                                       "http://127.0.0.1:5/p123456789")
        logging.getLogger("fichierfs.other").info("hidden")
        for h in root.handlers:
            h.flush()
        text = log.read_text()
        assert "<redacted>" in text and "emu-super-secret" not in text and "p123456789" not in text
        assert "hidden" not in text
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
            h.close()
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
        logging.getLogger("fichierfs.test_mod").setLevel(logging.NOTSET)


def test_journal_formatter_prefixes_priorities() -> None:
    rec = logging.LogRecord("fichierfs.x", logging.WARNING, __file__, 1, "a\nb", None, None)
    assert JournalFormatter().format(rec) == "<4>fichierfs.x: a\n<4>b"


def test_api_error_line_has_the_1fichier_code() -> None:
    from fichierfs.errors import FloodLocked, ServerError

    line = api_error_line(FloodLocked("Flood detected: IP Locked #374", code=374, http_status=403,
                                      endpoint="folder/ls"))
    assert line == "API error #374 on folder/ls, HTTP 403: Flood detected: IP Locked #374"
    assert api_error_line(ServerError("HTTP 503"), "download/get_token", 2) == (
        "API error ServerError on download/get_token, attempt 2: HTTP 503")


def test_redaction_of_query_tokens_and_headers() -> None:
    f = RedactingFilter([])
    assert "abc123" not in f.scrub("GET https://x/y?token=abc123&z=1")
    assert "zzzzzzzzzz" not in f.scrub("{'Authorization': 'Bearer zzzzzzzzzz'}")


# ---------------------------------------------------------------- README

def test_readme_options_table_is_generated_from_the_dataclass() -> None:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- options:begin -->\n(.*?)\n<!-- options:end -->", text, re.S)
    assert m, "README lacks the generated options table markers"
    assert m.group(1).strip() == option_table().strip(), "run scripts/gen_readme_options"
    assert text.startswith("# fichierfs\n")
    for needle in ("fichierfs login", "mount.fichierfs", "fichierfs@.service", "umount --wait", "fichierfs status",
                   "fichierfs sync", "--log-file", "Rotating the key"):
        assert needle in text, needle


# ---------------------------------------------------------------- storm defence (FUSE-free)

def _proc(tmp_path: Path, tid: int, tgid: int, thread: str, process: str) -> None:
    (tmp_path / str(tid)).mkdir(exist_ok=True)
    (tmp_path / str(tid) / "comm").write_text(thread + "\n")
    (tmp_path / str(tid) / "status").write_text(f"Name:\t{thread}\nTgid:\t{tgid}\n")
    (tmp_path / str(tgid)).mkdir(exist_ok=True)
    (tmp_path / str(tgid) / "comm").write_text(process + "\n")
    if tid != tgid:
        (tmp_path / str(tgid) / "status").write_text(f"Name:\t{process}\nTgid:\t{tgid}\n")


def test_policy_recognises_thumbnailers_and_indexers(tmp_path: Path) -> None:
    _proc(tmp_path, 101, 100, "loader", "pcmanfm")         # libfm's thumbnail thread
    _proc(tmp_path, 102, 100, "pool-pcmanfm", "pcmanfm")   # its copy/worker threads
    _proc(tmp_path, 200, 200, "tumblerd", "tumblerd")
    _proc(tmp_path, 300, 300, "tracker-extract", "tracker-extract")
    _proc(tmp_path, 400, 400, "cp", "cp")
    _proc(tmp_path, 500, 500, "gdk-pixbuf-thum", "gdk-pixbuf-thum")  # comm is cut at 15 chars
    p = ProcessPolicy("cached", proc=tmp_path)
    assert [p.kind(t) for t in (101, 102, 200, 300, 400, 500, 999)] == [
        "thumbnailer", None, "thumbnailer", "indexer", None, "thumbnailer", None]
    assert not p.may_download(101, cached=False)
    assert p.may_download(101, cached=True)
    assert p.may_download(102, cached=False) and p.may_download(400, cached=False)
    assert not p.may_download(300, cached=False)
    assert p.statistics() == {"mode": "cached", "denied": 2, "served_cached": 1,
                              "denied_by": {"thumbnailer": 1, "indexer": 1}}
    assert not ProcessPolicy("deny", proc=tmp_path).may_download(101, cached=True)
    assert ProcessPolicy("allow", proc=tmp_path).may_download(101, cached=False)
    with pytest.raises(ValueError):
        ProcessPolicy("sometimes")


def test_policy_remembers_threads_for_a_while(tmp_path: Path) -> None:
    now = [0.0]
    _proc(tmp_path, 7, 7, "tumblerd", "tumblerd")
    p = ProcessPolicy(proc=tmp_path, clock=lambda: now[0], ttl=10)
    assert p.kind(7) == "thumbnailer"
    _proc(tmp_path, 7, 7, "cat", "cat")  # the id was reused by another program
    assert p.kind(7) == "thumbnailer"
    now[0] = 11
    assert p.kind(7) is None


def test_status_tells_the_truth_about_connection_eta_and_failures() -> None:
    """Issue 11.7: connection state in the header; no ETA without a meaningful rate; one line per
    failing item in a person's words (not 'upload of rm [...] failed')."""
    doc = {"api": {"breaker": "closed", "connection": "unreachable", "unreachable_for": 75.0},
           "writeback": {"pending": 198, "pending_bytes": 2_000_000, "rate": 1.0, "uploading": [],
                         "errors": [{"path": "rm ['https://1fichier.com/?a', 'https://1fichier.com/?b']",
                                     "error": "file/rm: connection failed (ConnectError)", "attempts": 3}]}}
    out = _render(doc)
    head = out.splitlines()[0]
    assert "API unreachable for 75 s" in head and "API ok" not in head
    assert "ETA" not in head  # nothing can upload: no estimate
    assert "delete of 2 file(s)" in out and "1fichier could not be reached" in out
    assert "upload of rm" not in out
    doc["api"] = {"breaker": "closed"}
    doc["writeback"]["rate"] = 1.0  # 1 B/s for 2 MB: 23 days is no estimate
    assert "ETA" not in _render(doc).splitlines()[0]


def test_status_shows_a_coordinator_fallback_and_the_disk_cache() -> None:
    """A newcomer's trial: with Redis down the header said 'API ok' and nothing else, the Budget
    table cut the URL ('redis://127.0.0.1:…'), and the disk cache (--disk-cache-size) was absent."""
    url = "redis://127.0.0.1:57163/0"
    doc = {"api": {"breaker": "closed", "coordinator": {"kind": "redis", "url": url, "state": "fallback"}},
           "reader": {"disk": {"cached_bytes": 126_976, "limit": 100 << 20, "hits": 3}}}
    console = Console(file=io.StringIO(), width=80, color_system=None)
    console.print(render_status(doc, "/mnt/1f"))
    out = console.file.getvalue()
    head = " ".join(out.split("\n\n")[0].split())  # the header, wrapped at 80 columns
    assert f"API ok · coordinator {url} unreachable: conservative local budget" in head
    assert "…" not in out
    assert "124.0 KiB / 100.0 MiB" in out and re.search(r"disk cache hits\s+3", out)
    doc["api"]["coordinator"]["state"] = "ok"
    assert "unreachable" not in _render(doc).splitlines()[0]


def test_sync_stops_at_once_when_the_account_is_full() -> None:
    doc = {"writeback": {"pending": 2, "pending_bytes": 300, "uploading": [],
                         "over_quota": {"reason": "Storage quota exceeded", "files": ["a.bin", "b.bin"]}}}
    b = wait_drained(lambda: doc, console=Console(file=io.StringIO()), sleep=lambda s: pytest.fail("slept"))
    assert not b.drained and b.blocked and "full" in b.blocked and b.blocked_files == ["a.bin", "b.bin"]
    assert "stopped: the 1fichier account is full" in _render(doc)


def test_status_and_sync_count_pending_files_the_same_way() -> None:
    """One definition of "pending file(s)": files to upload (in flight included); deletes, moves
    and folders are "other changes" (status showed 305 file(s) while sync counted 243/260)."""
    doc = {"writeback": {"pending": 305, "pending_files": 260, "pending_changes": 45, "pending_bytes": 1 << 20,
                         "uploading": [], "uploaded_files": 0, "uploaded_bytes": 0}}
    out = _render(doc)
    assert "260 file(s), 1.0 MiB to upload, 45 other change(s)" in out and "305" not in out
    buf = io.StringIO()
    now = [0.0]
    wait_drained(lambda: doc, console=Console(file=buf, width=160, color_system=None), sleep=lambda s: None,
                 clock=lambda: now.__setitem__(0, now[0] + 1) or now[0], timeout=1.5)
    assert "0/260 + 45 other change(s)" in buf.getvalue()
    assert Backlog.of(doc).left_text() == "260 file(s) and 45 other change(s)"
    old = Backlog.of({"writeback": {"pending": 4}})  # a document from an older mount
    assert old.pending_files == 4 and old.pending_changes == 0 and not old.drained


def test_an_api_url_without_its_path_is_named() -> None:
    """Newcomer: ``--api-url http://127.0.0.1:PORT`` (no /v1) failed with "user/info: user/info: not found (HTTP 404)"."""
    from fichierfs.cli import _mount_failure
    from fichierfs.config import Options
    from fichierfs.errors import NotFound

    text = _mount_failure(NotFound("user/info: not found (HTTP 404)", http_status=404, endpoint="user/info"),
                          Options(api_url="http://127.0.0.1:8080"))
    assert "check --api-url" in text and "/v1" in text
