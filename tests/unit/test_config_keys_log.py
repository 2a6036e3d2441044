"""Options, key sources and log redaction."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest

from fichierfs.api import Secret
from fichierfs.cli import parse_o_options
from fichierfs.config import Options, add_arguments, option_table, options_from_args, parse_size
from fichierfs.errors import ConfigError
from fichierfs.keys import ENV_VAR, load_api_key, read_key_file
from fichierfs.log import RedactingFilter


def test_parse_size() -> None:
    assert parse_size("64M") == 64 << 20
    assert parse_size("1G") == 1 << 30
    assert parse_size("512") == 512
    with pytest.raises(ConfigError):
        parse_size("lots")


def test_options_from_strings_and_validation() -> None:
    o = options_from_args({"memory_budget": "128M", "dir_cache_time": "5", "read_only": "true"})
    assert o.memory_budget == 128 << 20 and o.dir_cache_time == 5.0 and o.read_only is True
    with pytest.raises(ConfigError, match="unknown option"):
        options_from_args({"nope": "1"})
    with pytest.raises(ConfigError):
        Options(chunk_size=1024)
    with pytest.raises(ConfigError):
        Options(dir_cache_time=-1)


def test_cli_is_built_from_the_dataclass() -> None:
    p = argparse.ArgumentParser()
    add_arguments(p)
    ns = p.parse_args(["--memory-budget", "1G", "--read-only"])
    assert vars(ns) == {"memory_budget": "1G", "read_only": True}
    table = option_table()
    for name in Options.__dataclass_fields__:
        assert f"--{name.replace('_', '-')}" in table


def test_o_options() -> None:
    assert parse_o_options("ro,allow_other,memory_budget=1G,_netdev,nofail,x-systemd.automount") == {
        "read_only": True, "allow_other": True, "memory_budget": "1G"}
    with pytest.raises(ConfigError, match="frobnicate"):
        parse_o_options("frobnicate=1")


def test_key_file_permissions(tmp_path: Path) -> None:
    f = tmp_path / "key"
    f.write_text("emu-secret-key\n")
    f.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_key_file(f)
    f.chmod(0o600)
    assert read_key_file(f).reveal() == "emu-secret-key"
    with pytest.raises(ConfigError):
        read_key_file(tmp_path / "missing")


def test_key_sources_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "emu-from-env")
    assert load_api_key(use_keyring=False).reveal() == "emu-from-env"
    f = tmp_path / "key"
    f.write_text("emu-from-file")
    f.chmod(0o600)
    assert load_api_key(f, use_keyring=False).reveal() == "emu-from-file"
    monkeypatch.delenv(ENV_VAR)
    with pytest.raises(ConfigError, match="no API key"):
        load_api_key(use_keyring=False)


def test_secret_never_shows() -> None:
    s = Secret("emu-very-secret")
    assert "very-secret" not in repr(s) + str(s) + f"{s}" + f"{s!r}"
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(s)


def test_redacting_filter_scrubs_key_bearer_and_links() -> None:
    f = RedactingFilter(["emu-very-secret"])
    rec = logging.LogRecord("x", logging.DEBUG, __file__, 1,
                            "key %s header Authorization: Bearer abcdefgh12345 link %s",
                            ("emu-very-secret", "https://a-1.1fichier.com/p1234567890"), None)
    f.filter(rec)
    msg = rec.getMessage()
    assert "emu-very-secret" not in msg and "abcdefgh12345" not in msg and "p1234567890" not in msg
    assert msg.count("<redacted>") == 3
