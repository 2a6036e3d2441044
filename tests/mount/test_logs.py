"""Logs of a real mount at debug level (httpx and httpcore included): nothing secret in them,
API errors one line each with 1fichier's code."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

from tests.mount.conftest import KEY, run_emulator, run_mount

TOKEN_URL = re.compile(r"https?://[^/\s'\"]+/p\d{3,}")


def _fault(emu, endpoint: str, kind: str, nth: int = 1, count: int = 1) -> None:
    body = json.dumps({"endpoint": endpoint, "kind": kind, "nth": nth, "count": count}).encode()
    req = urllib.request.Request(emu.base + "/_emulator/fault", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=10).read()


def test_debug_log_has_no_secret_and_one_line_per_api_error(real_seed: Path, tmp_path: Path) -> None:
    level = "debug,httpx=debug,httpcore=debug,hpack=debug"
    with run_emulator(tmp_path / "state", real_seed) as emu:
        emu.reset()
        with run_mount(emu, tmp_path / "mnt", "--log-level", level) as m:
            files = sorted(p for p in (m.path / "images").iterdir() if p.is_file())[:6]
            for p in files:  # download links and ranged GETs
                p.read_bytes()
            _fault(emu, "download/get_token", "5xx")      # a transient error, retried
            docs = sorted(p for p in (m.path / "licenses").iterdir() if p.is_file())[:3]
            for p in docs:
                p.read_bytes()
            _fault(emu, "download/get_token", "flood")    # 1fichier's flood lock, with its #code
            last = sorted(p for p in (m.path / "docs").rglob("*") if p.is_file())[:2]
            for p in last:
                p.read_bytes()
            assert emu.calls("download/get_token") >= 10
            log = m.log
        text = log.read_text(errors="replace")
    assert "DEBUG" in text and "fichierfs.api" in text, "debug logging was not on"
    assert KEY not in text
    assert "Bearer" not in text and "bearer" not in text.lower().replace("<redacted>", "")
    assert not TOKEN_URL.search(text), TOKEN_URL.search(text)
    flood_lines = [ln for ln in text.splitlines() if "#374" in ln or "#412" in ln]
    assert flood_lines, "the flood lock was not logged with its code"
    assert all("download/get_token" in ln for ln in flood_lines), flood_lines
    assert len([ln for ln in flood_lines if " WARNING " in ln or " ERROR " in ln]) == 1, flood_lines
    assert any("download/get_token" in ln and "503" in ln for ln in text.splitlines()), "the 5xx was not logged"
