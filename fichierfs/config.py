"""Options: one frozen dataclass with defaults, units and help, from which the CLI is built.

Each field's ``metadata`` holds ``help`` (one line) and ``unit`` (``"s"``, ``"bytes"``, ``""``);
:func:`option_table` renders the README table and :func:`add_arguments` the argparse options
(``--field-name``; booleans become flags). fstab ``-o a_b=c`` maps to ``--a-b c``.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from fichierfs.errors import ConfigError

__all__ = ["Options", "add_arguments", "options_from_args", "option_table", "parse_size"]

_UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str | int) -> int:
    """``"64M"`` → 67108864 (binary units K, M, G, T; plain digits are bytes).

    Raises:
        ConfigError: not a size.
    """
    if isinstance(text, int):
        return text
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    try:
        if t and t[-1] in _UNITS:
            return int(float(t[:-1]) * _UNITS[t[-1]])
        return int(t)
    except ValueError:
        raise ConfigError(f"not a size: {text!r} (use e.g. 512M, 2G)") from None


def _opt(default: Any, help: str, unit: str = "", **kw: Any) -> Any:
    return field(default=default, metadata={"help": help, "unit": unit, **kw})


@dataclass(frozen=True)
class Options:
    """Every tunable of a mount. Times in seconds, sizes in bytes."""

    api_url: str = _opt("https://api.1fichier.com/v1", "API base URL (point it at a local emulator for tests)")
    source_address: str | None = _opt(
        None, "local IP address to connect from (e.g. 127.0.0.2 makes a second mount a second host to a local "
        "emulator's per-IP limits; see docs/emulator.md)")
    api_key_file: Path | None = _opt(
        None, "file holding the API key (must not be group/world-readable); else $FICHIER_API_KEY or the keyring"
    )
    remote_folder: str = _opt("/", "remote folder shown as the mount's root")
    read_only: bool = _opt(False, "mount read-only (-o ro)")
    foreground: bool = _opt(False, "stay in the foreground (-f)")
    cache_dir: Path | None = _opt(None, "directory for staged writes and the metadata store (default: user cache dir); "
                                  "kept private: folders 0700, files 0600")
    adopt_journal: Path | None = _opt(
        None, "take over another journal directory's pending uploads (a mount names such directories when it finds "
        "them, e.g. after the API address changed)"
    )
    memory_budget: int = _opt(256 << 20, "bytes of downloaded data kept in memory, all open files together", "bytes")
    chunk_size: int = _opt(256 << 10, "unit of caching (downloads fetch many chunks per request)", "bytes")
    readahead_max: int = _opt(32 << 20, "largest read-ahead window of one sequential reader", "bytes")
    kernel_readahead: int = _opt(
        1 << 20, "kernel read-ahead of the mount (bigger FUSE reads; needs root, else the kernel's 128K)", "bytes"
    )
    disk_cache_size: int = _opt(
        1 << 30,
        "bytes of downloaded and just-uploaded data kept in the cache directory across remounts (LRU; 0 = off)",
        "bytes",
    )
    dir_cache_time: float = _opt(
        600.0, "age after which a folder in use is re-listed in the background (the older listing is "
        "served meanwhile); listings persist across mounts in the cache dir", "s")
    prefetch_tree: bool = _opt(False, "walk and list the whole remote tree in the background, at low priority")
    entry_timeout: float = _opt(1.0, "kernel entry cache time-out", "s")
    attr_timeout: float = _opt(1.0, "kernel attribute cache time-out", "s")
    negative_timeout: float = _opt(5.0, "how long a missing name is remembered", "s")
    token_ttl: float = _opt(280.0, "how long a download link is reused (1fichier: 300 s, §5)", "s")
    statfs_ttl: float = _opt(310.0, "how long the quota from user/info is reused (limit: 1 per 5 min, §4)", "s")
    write_back_delay: float = _opt(3.0, "quiet time after the last close before a file is uploaded", "s")
    max_uploads: int = _opt(2, "upload batches (POSTs) running at the same time (1fichier dislikes many streams)")
    upload_batch_files: int = _opt(500, "most files in one upload POST (1fichier takes up to 500, §6)")
    upload_batch_bytes: int = _opt(
        256 << 20, "most bytes in one upload POST (a failure re-sends at most this); larger files go alone", "bytes"
    )
    upload_batch_wait: float = _opt(10.0, "longest time a file ready for upload waits for its batch to fill", "s")
    clean_cache: int = _opt(1 << 30, "bytes of just-uploaded files kept locally for reading back", "bytes")
    budget_scale: float = _opt(1.0, "multiply every API spacing (use the emulator's --time-scale for tests)")
    stall_limit: float = _opt(30.0, "longest wait of a file operation for the API before it fails with EAGAIN", "s")
    thumbnails: str = _opt(
        "cached",
        "thumbnailers and indexers (tumblerd, PCManFM's loader thread, tracker…) may read: "
        "cached = only data already local, allow = anything, deny = nothing",
    )
    log_file: Path | None = _opt(None, "write the log here (default: stderr in the foreground, syslog otherwise)")
    log_level: str = _opt("info", "debug, info, warning or error; per module: fichierfs.scheduler=debug")
    allow_other: bool = _opt(False, "let other users access the mount (needs user_allow_other)")
    nonempty: bool = _opt(False, "allow a mount point that holds files (they are hidden while mounted; -o nonempty)")
    fsname: str = _opt("fichierfs", "file system name shown by mount and df")
    coordinator: str = _opt(
        "host",
        "how mounts of one account share the API budget: host = every mount on this host (built in), "
        "redis://HOST:PORT[/DB] or rediss://… = across hosts, none = this mount alone (benchmarks only)",
    )
    coordinator_password_file: Path | None = _opt(
        None, "file holding the coordinator's password (chmod 600); else $FICHIERFS_REDIS_PASSWORD"
    )

    def __post_init__(self) -> None:
        if self.thumbnails not in ("cached", "allow", "deny"):
            raise ConfigError("thumbnails must be cached, allow or deny")
        if self.chunk_size < 64 << 10:
            raise ConfigError("chunk_size must be at least 64K")
        if not 1 <= self.upload_batch_files <= 500:
            raise ConfigError("upload_batch_files must be 1 to 500 (§6)")
        if self.max_uploads < 1:
            raise ConfigError("max_uploads must be at least 1")
        if self.memory_budget < 4 * self.chunk_size:
            raise ConfigError("memory_budget must hold at least 4 chunks")
        if self.coordinator not in ("host", "none") and not self.coordinator.startswith(("redis://", "rediss://")):
            raise ConfigError("coordinator must be host, none, redis://HOST:PORT[/DB] or rediss://HOST:PORT[/DB]")
        if self.source_address is not None:
            import ipaddress

            try:
                ipaddress.ip_address(self.source_address)
            except ValueError:
                raise ConfigError(f"source_address: not an IP address: {self.source_address!r}") from None
        for f in fields(self):
            v = getattr(self, f.name)
            if f.metadata.get("unit") == "s" and v < 0:
                raise ConfigError(f"{f.name} must be ≥ 0 s")

    def cache_root(self) -> Path:
        """``cache_dir``, or the user cache directory (platformdirs: ``~/.cache/fichierfs``)."""
        import platformdirs

        return self.cache_dir or Path(platformdirs.user_cache_dir("fichierfs"))

    def store_dir(self, account: str = "") -> Path:
        """Where the journal and staging files of this account + remote folder live.

        ``<cache root>/<hash of api_url, remote_folder and account>``, where ``account`` is
        :func:`fichierfs.account.account_id` (the account, not the key: a rotated key finds
        its journal).
        """
        import hashlib

        ident = f"{self.api_url}\0{self.remote_folder.strip('/')}\0{account}"
        return self.cache_root() / hashlib.sha256(ident.encode()).hexdigest()[:16]

    def replace(self, **changes: Any) -> Options:
        return dataclasses.replace(self, **changes)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """Add one ``--option`` per :class:`Options` field (booleans as flags) to ``parser``."""
    for f in fields(Options):
        if f.name in skip:
            continue
        unit = f.metadata.get("unit", "")
        default = f.default
        shown = f" (default: {default})" if default not in (None, False) else ""
        help_ = f.metadata["help"] + (f" [{unit}]" if unit else "") + shown
        if f.type in ("bool", bool):
            parser.add_argument(_flag(f.name), action="store_true", default=argparse.SUPPRESS, help=help_)
        else:
            parser.add_argument(_flag(f.name), default=argparse.SUPPRESS, metavar=f.name.upper(), help=help_)


def _convert(f: dataclasses.Field[Any], raw: Any) -> Any:
    t = str(f.type)
    if isinstance(raw, str):
        if "bool" in t:
            return raw.lower() in ("1", "true", "yes", "on", "")
        if "Path" in t:
            return Path(raw).expanduser()
        if "float" in t:
            try:
                return float(raw)
            except ValueError:
                raise ConfigError(f"{f.name}: not a number: {raw!r}") from None
        if "int" in t:
            return parse_size(raw) if f.metadata.get("unit") == "bytes" else int(raw)
    return raw


def options_from_args(values: dict[str, Any]) -> Options:
    """Build :class:`Options` from a mapping of field name → raw value (CLI or fstab).

    Raises:
        ConfigError: an unknown option or a bad value (the message names it).
    """
    known = {f.name: f for f in fields(Options)}
    kw: dict[str, Any] = {}
    for name, raw in values.items():
        if name not in known:
            raise ConfigError(f"unknown option: {name}")
        kw[name] = _convert(known[name], raw)
    return Options(**kw)


def option_table() -> str:
    """A Markdown table of every option (for README.md)."""
    rows = ["| option | default | unit | meaning |", "|---|---|---|---|"]
    for f in fields(Options):
        rows.append(f"| `{_flag(f.name)}` | `{f.default}` | {f.metadata.get('unit', '')} | {f.metadata['help']} |")
    return "\n".join(rows)
