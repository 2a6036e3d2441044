"""The ``fichierfs`` command: ``mount``, ``umount``, ``status``, ``sync``, ``login``, ``logout``,
``emulator``; and ``mount.fichierfs``, the mount(8) helper.

Layering: cli is the top layer and may import everything below it. It imports the emulator
only inside the ``emulator`` sub-command (the design's explicit developer switch), never at
module level, so no core module depends on it (``tests/unit/test_layering.py``).

``mount`` runs in the background by default: the command re-executes itself with ``-f`` in
a new session and returns only once the child reports the mount live (through a pipe whose
fd number is in ``$FICHIERFS_READY_FD``), or prints the child's error and exits 1. The API
key is never an argument: the child inherits ``$FICHIER_API_KEY`` or reads the key file or
keyring itself.

Under systemd (``Type=notify``), the process that serves the mount sends ``READY=1`` to
``$NOTIFY_SOCKET`` once the kernel mount is live (:func:`sd_notify`, with ``MAINPID``). The
shipped units run ``mount -f`` so that process is the service's main process
(``NotifyAccess=main``); a background mount under systemd needs ``NotifyAccess=all``.

mount(8) integration (``contrib/fstab.example``): for the type ``fuse.fichierfs`` mount(8)
runs ``/sbin/mount.fuse.fichierfs SOURCE DIR -o OPTS`` (a link to ``mount.fichierfs``) when it
exists, else ``mount.fuse3``, which runs ``fichierfs SOURCE DIR -o OPTS`` from the standard
``PATH``; the ``fichierfs#/folder`` source with type ``fuse`` goes the same way. Both end in
:func:`mount_helper`. ``-o a_b=c`` becomes ``--a-b c``; an unknown option is refused by name.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fichierfs import __version__
from fichierfs.config import Options, add_arguments, options_from_args
from fichierfs.errors import AuthError, ConfigError, FichierError, MountGone, NoEntry

if TYPE_CHECKING:  # the API client is imported only by the commands that talk to 1fichier
    from fichierfs.api import Secret

__all__ = ["main", "build_parser", "parse_o_options", "mount_helper", "helper_to_argv", "sd_notify"]

log = logging.getLogger("fichierfs.cli")
READY_FD = "FICHIERFS_READY_FD"

_O_FLAGS = {"ro": ("read_only", True), "rw": ("read_only", False), "allow_other": ("allow_other", True),
            "nonempty": ("nonempty", True)}
_O_IGNORED = {"defaults", "auto", "noauto", "user", "users", "nouser", "owner", "group", "_netdev", "nofail",
              "exec", "noexec", "suid", "nosuid", "dev", "nodev", "atime", "noatime", "relatime", "strictatime",
              "nodiratime", "lazytime", "async", "sync", "dirsync", "nosymfollow", "loud", "silent"}
COMMANDS = ("mount", "umount", "status", "sync", "login", "logout", "emulator", "refresh", "forget")


def parse_o_options(text: str, *, sloppy: bool = False) -> dict[str, Any]:
    """Translate ``-o ro,api_key_file=/etc/k,memory_budget=512M`` into option values.

    ``a_b=c`` maps to the option ``a_b``; ``ro``/``rw``/``allow_other`` are flags; mount(8)
    generic options (``_netdev``, ``nofail``, ``noauto``, ``x-systemd.*``…) are ignored.

    Args:
        sloppy: mount(8)'s ``-s``: skip unknown options (with a warning) instead of failing.

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
        elif sloppy:
            print(f"fichierfs: ignoring unknown mount option {key!r} (sloppy mode)", file=sys.stderr)
        else:
            raise ConfigError(f"unknown mount option -o {key} (see 'fichierfs mount --help' or "
                              "'man mount' for the generic ones)")
    return out


def sd_notify(state: str, env: dict[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``) to systemd's ``$NOTIFY_SOCKET`` (sd_notify(3)).

    A plain datagram to a filesystem or abstract (``@name``) unix socket; the ``sdnotify``
    package does the same but is unmaintained since 2017. Returns False when not under a
    notify-aware supervisor or the send fails (never raises: readiness is best effort).
    """
    addr = (env if env is not None else os.environ).get("NOTIFY_SOCKET", "")
    if not addr or addr[0] not in "/@":
        return False
    if addr[0] == "@":
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(addr)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("sd_notify to %s failed: %s", addr.lstrip("\0"), exc.strerror)
        return False
    return True


def helper_to_argv(args: list[str]) -> tuple[list[str], bool]:
    """Translate a mount(8)/mount.fuse3 helper call into ``fichierfs`` CLI arguments.

    The call is ``SOURCE MOUNTPOINT [-o OPTS] [-s] [-f] [-n] [-v]`` (mount(8)'s helper
    convention: ``-f`` is *fake*, ``-s`` sloppy, ``-n`` no mtab, ``-v`` verbose). SOURCE is
    ``/remote/folder``, ``fichierfs#/remote/folder`` (type ``fuse``), ``fichierfs:/folder``, or
    ``fichierfs``/``1fichier``/``none`` for the account's root; ``-o remote_folder=`` wins.

    Returns:
        ``(argv, fake)``: the argv of ``fichierfs`` (``["mount", ..., MOUNTPOINT]``) and
        whether mount(8) only asked to check (``-f``).

    Raises:
        ConfigError: missing arguments, or an unknown option (named in the message).
    """
    positional: list[str] = []
    o_texts: list[str] = []
    sloppy = fake = False
    it = iter(args)
    for a in it:
        if a == "-o":
            o_texts.append(next(it, ""))
        elif a.startswith("-o") and len(a) > 2:
            o_texts.append(a[2:])
        elif a.startswith("-") and len(a) > 1 and not a.startswith("--"):
            for c in a[1:]:
                if c == "s":
                    sloppy = True
                elif c == "f":
                    fake = True
                elif c in "nvh":
                    continue
                else:
                    raise ConfigError(f"mount.fichierfs: unknown flag -{c}")
        else:
            positional.append(a)
    if len(positional) != 2:
        raise ConfigError("usage: mount.fichierfs SOURCE MOUNTPOINT [-o OPTIONS] (e.g. fichierfs#/Photos /mnt/1f "
                          "-o api_key_file=/etc/fichierfs/key)")
    source, mountpoint = positional
    values = parse_o_options(",".join(o_texts), sloppy=sloppy)
    if "remote_folder" not in values:
        folder = source
        for prefix in ("fichierfs#", "fichierfs:", "1fichier:"):
            folder = folder.removeprefix(prefix)
        if folder in ("fichierfs", "1fichier", "none", ""):
            folder = "/"
        values["remote_folder"] = folder if folder.startswith("/") else "/" + folder
    values.pop("foreground", None)  # the helper must return once the mount is live
    argv = ["mount"]
    fields = Options.__dataclass_fields__
    for name, value in values.items():
        if fields[name].type in ("bool", bool):
            if value is True or str(value).lower() in ("1", "true", "yes", "on", ""):
                argv.append("--" + name.replace("_", "-"))
        else:
            argv += ["--" + name.replace("_", "-"), str(value)]
    argv.append(mountpoint)
    return argv, fake


def mount_helper(argv: list[str] | None = None) -> int:
    """Entry point of ``mount.fichierfs`` (and of ``fichierfs SOURCE DIR -o …`` from mount.fuse3).

    Exit codes follow mount(8): 0 mounted, 1 bad usage or options, 32 mount failure.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[:1] in (["-h"], ["--help"]):
        print(_HELPER_HELP)
        return 0 if args else 1
    try:
        cli_argv, fake = helper_to_argv(args)
        parsed = build_parser().parse_args(cli_argv)
        _options(parsed)  # every value checked now, before forking
    except ConfigError as exc:
        print(f"mount.fichierfs: {exc}", file=sys.stderr)
        return 1
    if fake:
        return 0
    try:
        return 0 if _mount(parsed, cli_argv) == 0 else 32
    except ConfigError as exc:
        print(f"mount.fichierfs: {exc}", file=sys.stderr)
        return 32


_HELPER_HELP = """usage: mount.fichierfs SOURCE MOUNTPOINT [-o OPTIONS] [-s] [-f] [-n] [-v]

mount(8) helper of fichierfs. SOURCE is the remote folder (/Photos, fichierfs#/Photos, or
'fichierfs' for the whole account). OPTIONS: ro, rw, allow_other, mount(8)'s generic options
(_netdev, nofail, noauto, x-systemd.*, ... are ignored) and every 'fichierfs mount' option
written name=value, e.g. api_key_file=/etc/fichierfs/key,memory_budget=512M. Unknown options
are refused unless -s (sloppy). -f only checks the options (mount(8)'s fake mode).

fstab:  fichierfs#/Photos /mnt/1f fuse _netdev,nofail,noauto,x-systemd.automount,api_key_file=/etc/fichierfs/key 0 0
   or:  /Photos /mnt/1f fuse.fichierfs _netdev,nofail,api_key_file=/etc/fichierfs/key 0 0"""


_EPILOG = """\
API key sources, first found wins: --api-key-file FILE (mode 0600, yours or root's),
$FICHIER_API_KEY, the system keyring ('fichierfs login'). The key is never an argument.

examples:
  fichierfs login                              store the API key in the system keyring
  fichierfs mount ~/1fichier                   mount the whole account (returns once live)
  fichierfs mount --remote-folder /Photos -o ro ~/photos
  fichierfs status ~/1fichier                  uploads, API calls, flood breaker, budget
  fichierfs sync ~/1fichier                    wait until everything is uploaded
  fichierfs umount --wait ~/1fichier           upload everything, then unmount

fstab and systemd: see mount.fichierfs --help and contrib/ (README: "Mount at boot")."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``fichierfs`` and its sub-commands."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="fichierfs", description="Mount a 1fichier.com account as a local drive.",
                                     epilog=_EPILOG, formatter_class=fmt)
    parser.add_argument("--version", action="version", version=f"fichierfs {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    m = sub.add_parser(
        "mount",
        help="mount the account (background by default)",
        description="Mount a 1fichier account on MOUNTPOINT (an existing directory). Returns once the "
        "mount is live; -f stays in the foreground (systemd units use it). The API key comes from "
        "--api-key-file (mode 0600), $FICHIER_API_KEY or the system keyring ('fichierfs login'); "
        "never from the command line.",
        epilog="Every option can also be given as -o name=value (fstab style), e.g. "
        "-o ro,memory_budget=512M,api_key_file=/etc/fichierfs/key. Sizes take K/M/G suffixes.",
    )
    m.add_argument("mountpoint", type=Path, metavar="MOUNTPOINT", help="an existing empty directory")
    m.add_argument(
        "-f", dest="foreground", action="store_true", default=argparse.SUPPRESS, help="stay in the foreground"
    )
    m.add_argument("-o", dest="o_options", default="", metavar="OPT[,OPT...]",
                   help="mount options: ro, rw, allow_other, and any option below as name=value")
    add_arguments(m)

    u = sub.add_parser("umount", help="unmount (--wait: upload everything first)",
                       description="Unmount a fichierfs mount. Without --wait, files not yet uploaded stay in "
                       "the cache and are uploaded at the next mount (the command says how many).")
    u.add_argument("mountpoint", type=Path, metavar="MOUNTPOINT", help="where the account is mounted")
    u.add_argument("--wait", action="store_true", help="block until every pending upload is done, then unmount "
                   "(systemd's ExecStop uses this)")
    u.add_argument("--drain-timeout", type=float, default=None, metavar="S",
                   help="with --wait: give up (exit 1, still mounted) after S seconds")
    u.add_argument("--timeout", type=float, default=30.0, metavar="S",
                   help="seconds to wait for the mount to go away (default: 30)")

    st = sub.add_parser("status", help="what a mount is doing: uploads, errors, API calls, budget",
                        description="Show a fichierfs mount's state: pending uploads and bytes, last errors, "
                        "API calls per endpoint, the flood breaker and the call budget. Without "
                        "MOUNTPOINT, every fichierfs mount of this machine.")
    st.add_argument("mountpoint", type=Path, nargs="?", metavar="MOUNTPOINT", help="a fichierfs mount (default: all)")
    st.add_argument("--json", action="store_true", help="print the raw status document (JSON) for scripts")
    st.add_argument("-v", "--verbose", action="store_true", help="every cache and reader counter too")

    sy = sub.add_parser("sync", help="wait until everything pending is uploaded",
                        description="Block until every file written to the mount is uploaded, showing a "
                        "progress bar (files, bytes, rate, ETA). Exit 0 when drained; 1 on time-out "
                        "or if the mount goes away.")
    sy.add_argument("mountpoint", type=Path, metavar="MOUNTPOINT", help="a fichierfs mount")
    sy.add_argument("--timeout", type=float, default=None, metavar="S", help="give up after S seconds")
    sy.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sy.add_argument("--retry-now", action="store_true",
                    help="try failed uploads again at once (e.g. after freeing space on the account)")

    li = sub.add_parser("login", help="store the API key in the system keyring",
                        description="Read the API key (from the terminal without echo, or from standard input) "
                        "and store it in the system keyring (service 'fichierfs'); 'fichierfs mount' "
                        "finds it there. Running it again replaces the key (rotation).")
    li.add_argument("--stdin", action="store_true", help="read the key from standard input even on a terminal")
    sub.add_parser("logout", help="remove the API key from the system keyring",
                   description="Remove the API key stored by 'fichierfs login'. Live mounts keep running.")

    _add_freshness_parsers(sub)
    sub.add_parser("emulator", help="run the local 1fichier emulator (tests, demos, benchmarks)", add_help=False)
    return parser


def _add_freshness_parsers(sub: Any) -> None:
    """``fichierfs refresh [-r] PATH`` and ``fichierfs forget PATH`` (rclone's vfs/refresh, vfs/forget)."""
    rf = sub.add_parser("refresh", help="re-list a folder now (the remote changed behind the mount's back)",
                        description="Re-list the folder PATH (a file: its folder) of a fichierfs mount now and "
                        "show the result at once. 1fichier allows one listing of a folder per 30 s: the "
                        "command waits for it rather than failing.")
    rf.add_argument("-r", "--recursive", action="store_true",
                    help="every known sub-folder too (one listing each, ~3.5 s apart: 100 folders take ~6 min)")
    rf.add_argument("path", type=Path, metavar="PATH", help="a folder or file on a fichierfs mount")
    fg = sub.add_parser("forget", help="stop trusting a folder's cached listing",
                        description="Drop the cached (and persisted) listing of folder PATH: it is still shown "
                        "until it is re-listed, which happens in the background at its next use.")
    fg.add_argument("path", type=Path, metavar="PATH", help="a folder or file on a fichierfs mount")


def _freshness(args: argparse.Namespace) -> int:
    from fichierfs.control import send_control

    command = args.command if not getattr(args, "recursive", False) else "refresh-recursive"
    if command == "refresh-recursive":
        # it answers only at the end: say why it may take minutes (a newcomer waited 5 min in silence)
        print(f"{args.path}: re-listing it and every known sub-folder, one listing per ~3.5 s "
              "(1fichier's limit): 100 folders take about 6 minutes", file=sys.stderr, flush=True)
    doc = send_control(args.path, command)
    if command == "forget":
        print(f"{args.path}: listing forgotten; re-listed at its next use")
    else:
        print(f"{args.path}: refreshed ({doc.get('listings', '?')} listing(s))")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fichierfs`` console script. Returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["emulator"]:
        from fichierfs.emulator.server import main as emulator_main  # developer switch, see module doc

        return emulator_main(argv[1:])
    if _is_helper_call(argv):  # mount.fuse3 runs "fichierfs SOURCE MOUNTPOINT -o OPTS"
        return mount_helper(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "mount":
            return _mount(args, argv)
        if args.command == "umount":
            return _umount(args.mountpoint, args.timeout, wait=args.wait, drain_timeout=args.drain_timeout)
        if args.command == "status":
            return _status(args.mountpoint, as_json=args.json, verbose=args.verbose)
        if args.command == "sync":
            return _sync(args.mountpoint, timeout=args.timeout, quiet=args.quiet,
                         retry_now=getattr(args, "retry_now", False))
        if args.command == "login":
            return _login(force_stdin=args.stdin)
        if args.command == "logout":
            return _logout()
        if args.command in ("refresh", "forget"):
            return _freshness(args)
    except ConfigError as exc:
        print(f"fichierfs: {exc}", file=sys.stderr)
        return 2 if not isinstance(exc, MountGone) else 1
    parser.print_help()
    return 2


def _is_helper_call(argv: list[str]) -> bool:
    """``SOURCE MOUNTPOINT -o OPTS`` where SOURCE is no sub-command: the mount.fuse3 convention
    (mount(8) always passes ``-o``, at least ``rw``)."""
    return len(argv) >= 3 and argv[0] not in COMMANDS and not argv[0].startswith("-") and "-o" in argv


def _options(args: argparse.Namespace) -> Options:
    values = parse_o_options(args.o_options)
    for name in Options.__dataclass_fields__:
        if hasattr(args, name):
            values[name] = getattr(args, name)
    return options_from_args(values)


def _mount(args: argparse.Namespace, argv: list[str]) -> int:
    from fichierfs.log import parse_levels

    options = _options(args)
    try:
        parse_levels(options.log_level)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    mountpoint = Path(os.path.abspath(args.mountpoint))
    if _dead_mount(mountpoint):
        _clean_dead_mount(mountpoint)
    mountpoint = mountpoint.resolve()
    if not mountpoint.is_dir():
        raise ConfigError(f"mount point {mountpoint} does not exist or is not a directory (mkdir -p it first)")
    _check_empty(mountpoint, options)
    from fichierfs.keys import load_api_key

    key = load_api_key(options.api_key_file)  # fail early, in the foreground, with a clear message
    if not options.foreground:
        return _spawn_background(argv, options)
    return _run_foreground(options, mountpoint, key)


def _dead_mount(path: Path) -> bool:
    """True when ``path`` is a FUSE mount whose daemon is gone (ENOTCONN: killed, crashed).

    ``stat`` may still answer from the kernel's attribute cache; listing the root may not.
    """
    import errno

    from fichierfs.mount import is_mounted

    if not is_mounted(path):
        return False
    try:
        os.listdir(path)
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


def _fusermount_u(path: Path) -> subprocess.CompletedProcess[str]:
    """``fusermount3 -u`` (``umount`` as root if that fails); the last result."""
    res = subprocess.run(["fusermount3", "-u", str(path)], capture_output=True, text=True, check=False)
    if res.returncode != 0 and os.geteuid() == 0:
        res = subprocess.run(["umount", str(path)], capture_output=True, text=True, check=False)
    return res


def _clean_dead_mount(path: Path) -> None:
    """Unmount what a killed daemon left behind, saying so.

    Raises:
        ConfigError: it cannot be unmounted (the message says how to do it by hand).
    """
    print(f"fichierfs: {path} is a mount whose fichierfs process died (transport endpoint not connected): "
          "unmounting it first; its pending uploads are kept in the cache", file=sys.stderr)
    res = _fusermount_u(path)
    if res.returncode != 0:
        raise ConfigError(f"{path} is left over from a fichierfs process that died and could not be unmounted "
                          f"({res.stderr.strip()}); run: fusermount3 -u -z {path}")


def _check_empty(mountpoint: Path, options: Options) -> None:
    """Refuse a mount point holding files (they would be hidden) unless ``-o nonempty``.

    Raises:
        ConfigError: not empty, with the way out.
    """
    fstype = _fstype(mountpoint)
    if fstype is not None and fstype.endswith("fichierfs"):  # checked first: "-o nonempty" would stack mounts
        raise ConfigError(f"{mountpoint} is a fichierfs mount already (see: fichierfs status {mountpoint}); "
                          f"unmount it first: fichierfs umount {mountpoint}")
    if options.nonempty or fstype == "autofs":  # x-systemd.automount: listing it would wait on us
        return
    try:
        entries = sorted(p.name for p in mountpoint.iterdir())
    except OSError as exc:
        raise ConfigError(f"mount point {mountpoint}: {exc.strerror}") from None
    if entries:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        count = f"{len(entries)} {'entry' if len(entries) == 1 else 'entries'}"
        raise ConfigError(f"mount point {mountpoint} is not empty ({count}: {shown}); the mount would "
                          "hide them. Use an empty directory, or -o nonempty to mount over them anyway")


def _fstype(path: Path) -> str | None:
    """The type of the file system mounted exactly on ``path`` (last one wins), if any."""
    found = None
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2 and parts[1] == str(path):
                    found = parts[2]
    except OSError:
        return None
    return found


def _spawn_background(argv: list[str], options: Options) -> int:
    """Start ``fichierfs mount … -f`` as a daemon and wait until it reports the mount live.

    The child runs ``python -P -m fichierfs``: ``-P`` keeps the working directory off
    ``sys.path``, so a ``fichierfs/`` folder there (the parent of a clone, ``~`` after cloning
    into ``~/fichierfs``) cannot shadow the installed package. Its stderr goes to an unlinked
    temporary file until the mount is live (the child then points it at the log file or
    /dev/null): a child that dies first has its last lines shown here, never lost.
    """
    import tempfile

    r, w = os.pipe()
    env = dict(os.environ, **{READY_FD: str(w)})
    cmd = [sys.executable, "-P", "-m", "fichierfs", *argv, "-f"]
    with tempfile.TemporaryFile() as err:
        try:
            child = subprocess.Popen(
                cmd, env=env, pass_fds=(w,), start_new_session=True,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            )
        finally:
            os.close(w)
        message = ""
        with os.fdopen(r, "r") as pipe:
            for line in pipe:  # "note: …" while it starts, then "ok" or "error: …"
                if line.startswith("note: "):
                    print(f"fichierfs: {line[6:].rstrip()}", file=sys.stderr, flush=True)
                else:
                    message += line
        if message.startswith("ok"):
            return 0
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        err.seek(0)
        tail = err.read()[-4000:].decode(errors="replace").strip()
    reason = message.strip().removeprefix("error: ")
    if not reason:
        code = child.returncode
        reason = f"the mount process exited (code {code}) before the mount was live" if code is not None \
            else "the mount process stopped talking before the mount was live"
    print(f"fichierfs: mount failed: {reason}", file=sys.stderr)
    if tail and tail not in reason:
        print("fichierfs: the mount process said:\n" + "\n".join("  " + ln for ln in tail.splitlines()[-25:]),
              file=sys.stderr)
    return 1


def _detach_stderr(log_file: Path | None) -> None:
    """Once live, a daemon's stderr leaves the parent's capture file: the log file or /dev/null."""
    target = os.open(log_file if log_file else os.devnull, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.dup2(target, 2)
    finally:
        os.close(target)


def _mount_failure(exc: FichierError, options: Options) -> str:
    """The reason a mount failed, in a person's words (the raw 1fichier message kept in brackets)."""
    if isinstance(exc, AuthError):
        return (f"1fichier refused the API key ({exc}): check it, or create a new one in 1fichier's console "
                "(Paramètres → API)")
    if isinstance(exc, NoEntry) and options.remote_folder.strip("/"):
        return f"the remote folder {options.remote_folder} does not exist on this account ({exc})"
    if "HTTP 404" in str(exc) and "user/info" in str(exc):  # an address without the API's path
        return (f"{options.api_url} answered 404 to user/info: check --api-url (1fichier's is "
                "https://api.1fichier.com/v1; the emulator prints its own, ending in /v1)")
    if "connection failed" in str(exc):  # name the address tried: a wrong --api-url or port is the usual cause
        return f"{options.api_url} could not be reached ({exc}): check --api-url and the network"
    return str(exc)


def _run_foreground(options: Options, mountpoint: Path, key: Secret) -> int:
    import trio

    from fichierfs.log import setup_logging
    from fichierfs.mount import run_mount
    from fichierfs.private import private_dir, restrict_umask

    restrict_umask()  # the cache and the logs are private whatever the caller's umask (issue 11)
    ready_fd = os.environ.pop(READY_FD, None)
    daemon = ready_fd is not None
    log_file = options.log_file
    fallback = ""
    if daemon and log_file is None and not Path("/dev/log").exists():
        # no syslog (containers, minimal systems): warnings would be lost; keep them in the cache dir
        log_file = private_dir(options.cache_root()) / "fichierfs.log"
        if not log_file.exists():  # said once, when the fallback log is created, not at every mount
            fallback = f"no syslog on this machine (/dev/log missing): the mount logs to {log_file}"
    setup_logging(options.log_level, log_file, syslog=daemon and log_file is None, secrets=[key.reveal()])

    def say(text: str) -> None:
        """Tell the person who ran ``fichierfs mount`` (the parent prints ``note:`` lines as they come)."""
        log.warning("%s", text) if text.startswith("WARNING") else log.info("%s", text)
        if ready_fd is not None:
            os.write(int(ready_fd), f"note: {text}\n".encode())
        elif log_file is not None:  # else the log line above went to stderr already
            print(f"fichierfs: {text}", file=sys.stderr)

    if fallback:
        say(fallback)

    def ready() -> None:
        nonlocal ready_fd
        sd_notify(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=mounted {options.remote_folder} on {mountpoint}")
        if ready_fd is not None:
            _detach_stderr(log_file)
            os.write(int(ready_fd), b"ok\n")
            os.close(int(ready_fd))
            ready_fd = None

    try:
        try:
            trio.run(run_mount, options, mountpoint, key, ready, say)
        except BaseExceptionGroup as group:
            raise _unwrap(group) from None
    except FichierError as exc:
        log.log(exc.level, "mount failed: %s", exc)
        text = _mount_failure(exc, options)
        if ready_fd is not None:
            os.write(int(ready_fd), f"error: {text}\n".encode())
        else:
            print(f"fichierfs: {text}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except Exception as exc:  # a bug: say it, with the traceback in the log
        log.exception("mount crashed")
        if ready_fd is not None:
            os.write(int(ready_fd), f"error: {type(exc).__name__}: {exc}\n".encode())
        else:
            print(f"fichierfs: mount crashed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def _unwrap(exc: BaseException) -> BaseException:
    """The first leaf of a (nested) exception group: what actually went wrong."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _umount(mountpoint: Path, timeout: float, *, wait: bool = False, drain_timeout: float | None = None) -> int:
    from fichierfs.control import Backlog, human_bytes, read_status, wait_drained
    from fichierfs.mount import is_mounted

    target = Path(os.path.abspath(mountpoint))
    if _dead_mount(target):  # killed daemon: nothing to wait for or ask, just unmount
        res = _fusermount_u(target)
        if res.returncode != 0:
            print(f"fichierfs: the fichierfs process of {target} died and unmounting failed ({res.stderr.strip()}); "
                  f"run: fusermount3 -u -z {target}", file=sys.stderr)
            return 1
        print(f"fichierfs: the fichierfs process of {target} had died; unmounted it. Changes not uploaded yet are "
              "kept in the cache and uploaded at the next mount", file=sys.stderr)
        return 0
    target = target.resolve()
    if not is_mounted(target):
        print(f"fichierfs: {target} is not mounted", file=sys.stderr)
        return 1
    pid: int | None = None
    try:
        try:
            pid = int((read_status(target).get("daemon") or {}).get("pid") or 0) or None
        except (TypeError, ValueError):
            pid = None
        if wait:
            left = wait_drained(lambda: read_status(target), timeout=drain_timeout,
                                progress=sys.stderr.isatty())
            if not left.drained:
                print(f"fichierfs: {left.left_text()} still pending after {drain_timeout} s; "
                      f"{target} stays mounted", file=sys.stderr)
                return 1
        else:
            left = Backlog.of(read_status(target))
            if not left.drained:
                print(f"fichierfs: {left.left_text()} ({human_bytes(left.pending_bytes)}) not uploaded yet: "
                      "they are kept in the cache and uploaded at the next mount "
                      "('fichierfs umount --wait' uploads them first)", file=sys.stderr)
    except MountGone as exc:  # a dead daemon: unmounting is all that is left to do
        print(f"fichierfs: {exc}", file=sys.stderr)
    res = _fusermount_u(target)
    if res.returncode != 0:
        print(f"fichierfs: {res.stderr.strip()}", file=sys.stderr)
        return 1
    deadline = time.monotonic() + timeout
    while is_mounted(target) and time.monotonic() < deadline:
        time.sleep(0.05)
    # the daemon saves its journal and budget clocks and exits within seconds (its waiting
    # requests are cancelled); a remount before that would be refused, so wait for it
    while pid is not None and _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid is not None and _alive(pid):
        print(f"fichierfs: {target} is unmounted, but its daemon (pid {pid}) is still finishing; "
              "a new mount of the same folder is refused until it has exited", file=sys.stderr)
        return 1
    if wait:  # as sync does: say it, also when not on a terminal (scripts, systemd logs)
        print(f"fichierfs: everything written to {target} is uploaded; unmounted", file=sys.stderr)
    return 0


def _alive(pid: int) -> bool:
    """True while process ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _status(mountpoint: Path | None, *, as_json: bool, verbose: bool = False) -> int:
    from rich.console import Console

    from fichierfs.control import fichierfs_mounts, read_status, render_status

    targets = [mountpoint.resolve()] if mountpoint is not None else fichierfs_mounts()
    if not targets:
        print("fichierfs: no fichierfs mount on this machine", file=sys.stderr)
        return 1
    docs: dict[str, Any] = {}
    failed = 0
    for t in targets:
        try:
            docs[str(t)] = read_status(t)
        except MountGone as exc:
            print(f"fichierfs: {exc}", file=sys.stderr)
            failed += 1
    if as_json:
        out = docs[str(targets[0])] if mountpoint is not None and docs else docs
        if docs:
            print(json.dumps(out, indent=2, sort_keys=True))
    else:
        console = Console()
        for path, doc in docs.items():
            console.print(render_status(doc, path, verbose=verbose))
    return 1 if failed else 0


def _sync(mountpoint: Path, *, timeout: float | None, quiet: bool, retry_now: bool = False) -> int:
    from fichierfs.control import CONTROL_XATTR, MountGone, read_status, wait_drained

    target = mountpoint.resolve()
    if retry_now:
        try:
            os.setxattr(target, CONTROL_XATTR, b"retry-now")
        except OSError as exc:
            raise MountGone(f"{target}: cannot ask for a retry ({exc.strerror})") from None
    left = wait_drained(lambda: read_status(target), timeout=timeout, progress=not quiet)
    if left.blocked:
        print(f"fichierfs: {left.blocked}", file=sys.stderr)
        for name in left.blocked_files[:20]:
            print(f"  {name}", file=sys.stderr)
        if len(left.blocked_files) > 20:
            print(f"  … and {len(left.blocked_files) - 20} more", file=sys.stderr)
        print("fichierfs: staged data is kept; free space on the account (or delete files through the mount), "
              f"then run 'fichierfs sync --retry-now {target}'", file=sys.stderr)
        return 1
    if left.refused:
        print(f"fichierfs: {len(left.refused)} file(s) refused by 1fichier, kept locally and not uploaded:",
              file=sys.stderr)
        for r in left.refused[:20]:
            print(f"  {r.get('path')}: {r.get('error')}", file=sys.stderr)
        return 1
    if not left.drained:
        print(f"fichierfs: {left.left_text()} still pending after {timeout} s", file=sys.stderr)
        return 1
    if not quiet:
        print(f"fichierfs: everything written to {target} is uploaded", file=sys.stderr)
    return 0


def _login(*, force_stdin: bool = False) -> int:
    import getpass

    from fichierfs.api import Secret
    from fichierfs.keys import keyring_backend, store_api_key

    keyring_backend()  # no usable keyring: say so before asking for the key
    if sys.stdin.isatty() and not force_stdin:
        value = getpass.getpass("1fichier API key (not shown): ")
    else:
        value = sys.stdin.readline()
    backend = store_api_key(Secret(value.strip()))
    del value
    print(f"fichierfs: API key stored in the system keyring ({backend}); 'fichierfs mount' will use it "
          "when no key file or $FICHIER_API_KEY is given", file=sys.stderr)
    return 0


def _logout() -> int:
    from fichierfs.keys import delete_api_key

    if delete_api_key():
        print("fichierfs: API key removed from the system keyring (live mounts keep theirs until unmounted)",
              file=sys.stderr)
        return 0
    print("fichierfs: no API key was stored in the system keyring", file=sys.stderr)
    return 1
