"""The ``fichierfs`` command: ``mount``, ``umount``, ``emulator``.

Layering: cli is the top layer and may import everything below it. It imports the emulator
only inside the ``emulator`` sub-command (the design's explicit developer switch), never at
module level, so no core module depends on it (``tests/unit/test_layering.py``).

``mount`` runs in the background by default: the command re-executes itself with ``-f`` in
a new session and returns only once the child reports the mount live (through a pipe whose
fd number is in ``$FICHIERFS_READY_FD``), or prints the child's error and exits 1. The API
key is never an argument: the child inherits ``$FICHIER_API_KEY`` or reads the key file or
keyring itself.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fichierfs import __version__
from fichierfs.config import Options, add_arguments, options_from_args
from fichierfs.errors import ConfigError, FichierError

__all__ = ["main", "build_parser", "parse_o_options"]

log = logging.getLogger("fichierfs.cli")
READY_FD = "FICHIERFS_READY_FD"

_O_FLAGS = {"ro": ("read_only", True), "rw": ("read_only", False), "allow_other": ("allow_other", True)}
_O_IGNORED = {"defaults", "auto", "noauto", "user", "users", "nouser", "_netdev", "nofail", "exec", "noexec",
              "suid", "nosuid", "dev", "nodev", "atime", "noatime", "relatime"}


def parse_o_options(text: str) -> dict[str, Any]:
    """Translate ``-o ro,api_key_file=/etc/k,memory_budget=512M`` into option values.

    ``a_b=c`` maps to the option ``a_b``; ``ro``/``rw``/``allow_other`` are flags; mount(8)
    generic options (``_netdev``, ``nofail``, ``noauto``, ``x-systemd.*``…) are ignored.

    Raises:
        ConfigError: an unknown option (the message names it).
    """
    known = {f for f in Options.__dataclass_fields__}
    out: dict[str, Any] = {}
    for item in [p.strip() for p in text.split(",") if p.strip()]:
        key, _, value = item.partition("=")
        if key in _O_FLAGS:
            name, val = _O_FLAGS[key]
            out[name] = val
        elif key in _O_IGNORED or key.startswith(("x-systemd.", "x-gvfs", "comment=")):
            continue
        elif key.replace("-", "_") in known:
            out[key.replace("-", "_")] = value if _ else "true"
        else:
            raise ConfigError(f"unknown mount option -o {key} (see 'fichierfs mount --help')")
    return out


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``fichierfs`` and its sub-commands."""
    parser = argparse.ArgumentParser(prog="fichierfs", description="Mount a 1fichier.com account as a local drive.")
    parser.add_argument("--version", action="version", version=f"fichierfs {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    m = sub.add_parser(
        "mount",
        help="mount the account (background by default)",
        description="Mount a 1fichier account. The API key comes from $FICHIER_API_KEY, "
        "--api-key-file (mode 0600) or the system keyring; never from the command line.",
    )
    m.add_argument("mountpoint", type=Path, metavar="MOUNTPOINT")
    m.add_argument("-f", dest="foreground", action="store_true", default=argparse.SUPPRESS, help="stay in the foreground")
    m.add_argument("-o", dest="o_options", default="", metavar="OPT[,OPT...]",
                   help="mount options: ro, allow_other, and any option below as name=value")
    add_arguments(m)

    u = sub.add_parser("umount", help="unmount a fichierfs mount")
    u.add_argument("mountpoint", type=Path, metavar="MOUNTPOINT")
    u.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the mount to go away")

    sub.add_parser("emulator", help="run the local 1fichier emulator (tests, demos, benchmarks)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fichierfs`` console script. Returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["emulator"]:
        from fichierfs.emulator.server import main as emulator_main  # developer switch, see module doc

        return emulator_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "mount":
            return _mount(args, argv)
        if args.command == "umount":
            return _umount(args.mountpoint, args.timeout)
    except ConfigError as exc:
        print(f"fichierfs: {exc}", file=sys.stderr)
        return 2
    parser.print_help()
    return 2


def _options(args: argparse.Namespace) -> Options:
    values = parse_o_options(args.o_options)
    for name in Options.__dataclass_fields__:
        if hasattr(args, name):
            values[name] = getattr(args, name)
    return options_from_args(values)


def _mount(args: argparse.Namespace, argv: list[str]) -> int:
    options = _options(args)
    mountpoint = args.mountpoint.resolve()
    if not mountpoint.is_dir():
        raise ConfigError(f"mount point {mountpoint} is not a directory")
    from fichierfs.keys import load_api_key

    key = load_api_key(options.api_key_file)  # fail early, in the foreground, with a clear message
    if not options.foreground:
        return _spawn_background(argv, options)
    return _run_foreground(options, mountpoint, key)


def _spawn_background(argv: list[str], options: Options) -> int:
    r, w = os.pipe()
    env = dict(os.environ, **{READY_FD: str(w)})
    cmd = [sys.executable, "-m", "fichierfs", *argv, "-f"]
    stderr = open(options.log_file, "ab") if options.log_file else subprocess.DEVNULL  # noqa: SIM115
    try:
        child = subprocess.Popen(
            cmd, env=env, pass_fds=(w,), start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
        )
    finally:
        os.close(w)
        if stderr is not subprocess.DEVNULL:
            stderr.close()
    with os.fdopen(r, "r") as pipe:
        message = pipe.read()
    if message.startswith("ok"):
        return 0
    child.wait(timeout=30)
    print(f"fichierfs: mount failed: {message.strip() or f'exit code {child.returncode}'}", file=sys.stderr)
    return 1


def _run_foreground(options: Options, mountpoint: Path, key: Any) -> int:
    import trio

    from fichierfs.log import setup_logging
    from fichierfs.mount import run_mount

    ready_fd = os.environ.pop(READY_FD, None)
    daemon = ready_fd is not None
    setup_logging(options.log_level, options.log_file, syslog=daemon and options.log_file is None,
                  secrets=[key.reveal()])

    def ready() -> None:
        nonlocal ready_fd
        if ready_fd is not None:
            os.write(int(ready_fd), b"ok\n")
            os.close(int(ready_fd))
            ready_fd = None

    try:
        try:
            trio.run(run_mount, options, mountpoint, key, ready)
        except BaseExceptionGroup as group:
            raise _unwrap(group) from None
    except FichierError as exc:
        log.log(exc.level, "mount failed: %s", exc)
        if ready_fd is not None:
            os.write(int(ready_fd), f"error: {exc}\n".encode())
        else:
            print(f"fichierfs: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except Exception as exc:  # a bug: say it, with the traceback in the log
        log.exception("mount crashed")
        if ready_fd is not None:
            os.write(int(ready_fd), f"error: {type(exc).__name__}: {exc}\n".encode())
        return 1
    return 0


def _unwrap(exc: BaseException) -> BaseException:
    """The first leaf of a (nested) exception group: what actually went wrong."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _umount(mountpoint: Path, timeout: float) -> int:
    from fichierfs.mount import is_mounted

    target = mountpoint.resolve()
    if not is_mounted(target):
        print(f"fichierfs: {target} is not mounted", file=sys.stderr)
        return 1
    res = subprocess.run(["fusermount3", "-u", str(target)], capture_output=True, text=True)
    if res.returncode != 0:
        print(f"fichierfs: {res.stderr.strip()}", file=sys.stderr)
        return 1
    deadline = time.monotonic() + timeout
    while is_mounted(target) and time.monotonic() < deadline:
        time.sleep(0.05)
    return 0
