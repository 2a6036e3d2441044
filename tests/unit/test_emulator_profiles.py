"""Emulator profiles (issue 15.1): the strict default and the documented lenient profile (separate
listing clocks per endpoint, a flood lock that calls during it do not extend, no ban growth, user/info's
lock on user/info only, inclusive date bounds), §2.2, §2.3, §4."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from fichierfs.emulator import EmulatorConfig
from fichierfs.emulator.server import _parser, config_from_args
from tests.unit.emu_http import IP_LOCK, msg


def test_profile_values() -> None:
    strict, lenient = EmulatorConfig(), EmulatorConfig.profile("lenient")
    assert EmulatorConfig.profile("strict") == strict
    assert strict.shared_listing_clocks and strict.extend_lock and strict.ban_growth == 2.0
    assert not lenient.shared_listing_clocks and not lenient.extend_lock and lenient.ban_growth == 1.0
    assert not lenient.user_info_lock_blocks_api and lenient.date_filter_inclusive
    assert lenient.user_rate_per_second == 0 and lenient.user_listing_interval == 0
    # the documented limits themselves are the same in both
    for f in ("rate_per_second", "folder_list_interval", "listing_interval", "all_files_interval",
              "user_info_interval", "user_info_ip_interval", "flood_lock_seconds", "max_listing"):
        assert getattr(strict, f) == getattr(lenient, f), f
    assert EmulatorConfig.profile("lenient", extend_lock=True).extend_lock
    with pytest.raises(ValueError):
        EmulatorConfig.profile("kind")


def test_cli_profile() -> None:
    cfg = config_from_args(_parser().parse_args(["--profile", "lenient", "--time-scale", "0.5"]))
    assert cfg == EmulatorConfig.profile("lenient", time_scale=0.5)
    assert config_from_args(_parser().parse_args([])) == EmulatorConfig()
    with pytest.raises(SystemExit):
        _parser().parse_args(["--profile", "nice"])


async def test_rclone_pattern_file_ls_then_folder_ls(factory: Any, autojump_clock: Any) -> None:
    """rclone lists a folder with file/ls then folder/ls 0.4 s apart (§2.2): a flood in the strict profile
    (one folder clock, one 3 s gap), fine in the lenient one; the same endpoint twice within 30 s floods
    in both."""
    _, strict = await factory("strict")
    assert await msg(strict, "file/ls", folder_id=0) is None
    await trio.sleep(0.4)
    assert await msg(strict, "folder/ls", folder_id=0) == IP_LOCK
    emu, lenient = await factory("lenient")
    assert await msg(lenient, "file/ls", folder_id=0) is None
    await trio.sleep(0.4)
    assert await msg(lenient, "folder/ls", folder_id=0) is None
    await trio.sleep(10)
    assert await msg(lenient, "file/ls", folder_id=0) == IP_LOCK  # its own 30 s clock
    assert emu.stats()["flood_locks"] == 1


async def test_lenient_lock_is_not_extended(factory: Any, autojump_clock: Any) -> None:
    """§4: strict — each call during the lock pushes its end to now + 60 s; lenient — it ends 60 s after
    it began whatever is called meanwhile."""
    for profile in ("strict", "lenient"):
        _, c = await factory(profile)
        for _ in range(3):
            await msg(c, "remote/ls")
        assert await msg(c, "remote/ls") == IP_LOCK  # t = 0: lock until 60
        await trio.sleep(59)
        assert await msg(c, "remote/ls") == IP_LOCK  # strict: now until 119
        await trio.sleep(2)
        if profile == "lenient":
            assert await msg(c, "remote/ls") is None
            continue
        assert await msg(c, "remote/ls") == IP_LOCK  # t = 61: strict until 121
        await trio.sleep(59)
        assert await msg(c, "remote/ls") == IP_LOCK  # t = 120: until 180
        await trio.sleep(61)
        assert await msg(c, "remote/ls") is None


def test_cli_set_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    """``--set FIELD=VALUE`` reaches any EmulatorConfig field (last wins); ``--help`` lists the control
    routes; docs/emulator.md describes every field."""
    import dataclasses

    args = _parser().parse_args(["--profile", "lenient", "--set", "extend_lock=true", "--set", "quota=2G",
                                 "--set", "location_window=7.5", "--set", "bandwidth=none", "--bandwidth", "9",
                                 "--set", "max_listing=100"])
    cfg = config_from_args(args)
    assert cfg.extend_lock and not cfg.shared_listing_clocks  # lenient, one field overridden
    assert (cfg.quota, cfg.location_window, cfg.bandwidth, cfg.max_listing) == (2 * 10**9, 7.5, None, 100)
    for bad in ("nope=1", "extend_lock=maybe", "max_listing=x", "quota"):
        with pytest.raises(SystemExit):
            _parser().parse_args(["--set", bad])
    capsys.readouterr()
    with pytest.raises(SystemExit):
        _parser().parse_args(["--help"])
    out = capsys.readouterr().out
    for route in ("stats", "reset", "unlock", "fault", "quota", "client"):
        assert f"/_emulator/{route}" in out
    doc = (Path(__file__).resolve().parents[2] / "docs" / "emulator.md").read_text()
    for f in dataclasses.fields(EmulatorConfig):
        assert f"`{f.name}`" in doc, f.name
    for route in ("stats", "reset", "unlock", "fault", "quota", "client"):
        assert f"/_emulator/{route}" in doc
