"""Loopback HTTP(S) server for the emulator (hypercorn, trio worker).

    fichierfs emulator [--host 127.0.0.1] [--port 0] [--state DIR] [--seed DIR]
        [--tls-cert F --tls-key F] [--time-scale X] [--no-limits] [--latency S] [--bandwidth BYTES_PER_S]
        [--flood-lock-seconds S] [--visibility-delay S] [--profile strict|lenient] [--quota BYTES]
        [--set FIELD=VALUE ...]

Every knob and control route is described in docs/emulator.md (and in ``--help``).

Refuses non-loopback hosts (exit 2). Once listening, prints ``FICHIER_API_URL=http(s)://HOST:PORT/v1`` as the
first stdout line (flushed), then serves until SIGTERM/SIGINT (exit 0).

Note for rclone: it builds ``https://<node>/upload.cgi`` itself (§6), and our node host is our own host:port,
so run with TLS when rclone is the client.
"""

from __future__ import annotations

import argparse
import ipaddress
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from .config import PROFILES, EmulatorConfig
from .core import Emulator

__all__ = ["main", "is_loopback"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fichierfs emulator",
        description="A local emulator of the 1fichier.com API (docs/1fichier-api.md), with the documented "
        "rate limits ON by default. Prints FICHIER_API_URL=<url> as its first line once listening. "
        "API keys must start with 'emu-' ('emu-free…' is a free account). Full guide: docs/emulator.md.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind (others are refused)")
    p.add_argument("--port", type=int, default=0, help="TCP port; 0 = an ephemeral port (default)")
    p.add_argument("--state", type=Path, default=None,
                   help="directory holding the account (files on disk + SQLite); default: a new temp dir")
    p.add_argument("--seed", type=Path, default=None, help="import this local tree into the account's root")
    p.add_argument("--tls-cert", type=Path, default=None, help="PEM certificate: serve HTTPS (with --tls-key)")
    p.add_argument("--tls-key", type=Path, default=None, help="PEM private key for --tls-cert")
    p.add_argument("--time-scale", type=float, default=1.0,
                   help="multiply every limit window and lock duration (e.g. 0.05 for fast tests)")
    p.add_argument("--no-limits", action="store_true", help="switch the rate limits off")
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to every request")
    p.add_argument("--bandwidth", type=int, default=None, help="bytes/s cap per download stream")
    p.add_argument("--flood-lock-seconds", type=float, default=60.0,
                   help="how long a first flood lock lasts, seconds (default 60; scaled by --time-scale; in the "
                   "strict profile every call during a lock extends it and repeated offences double it, up to 1 h)")
    p.add_argument("--visibility-delay", type=float, default=0.0,
                   help="seconds before a new upload shows in listings (eventual consistency)")
    p.add_argument("--profile", choices=PROFILES, default="strict",
                   help="strict (default): every rule the API doc leaves open is read the strict way (file/ls and "
                   "folder/ls share a folder's 30 s clock and the 3 s listing gap; calls during a flood lock extend "
                   "it; bans grow for repeated offences; a per-account rate beside the per-IP one). lenient: the "
                   "forgiving reading (separate clocks per endpoint, a lock ends when it ends, no ban growth, "
                   "user/info's lock covers user/info only, inclusive sent_before/sent_after); see docs/emulator.md")
    p.add_argument("--quota", type=parse_size, default=None, metavar="BYTES",
                   help="the account's capacity (default 1 TiB): an upload that does not fit is refused with "
                   "'Storage quota exceeded' and user/info shows it; suffixes k M G T (powers of 1000, as 1fichier "
                   "counts GB) or Ki Mi Gi Ti; change it at run time with POST /_emulator/quota {\"bytes\": N}")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", type=_field_value,
                   help="set any EmulatorConfig field (repeatable), e.g. --set location_window=10 --set "
                   "one_location=false --set max_listing=100; fields and meanings: docs/emulator.md")
    return p


_EPILOG = """\
control routes (loopback clients only; <base> = FICHIER_API_URL without /v1):
  GET  <base>/_emulator/stats    calls per endpoint, flood_locks, locks by kind (ip/user/user_info),
                                 bytes_down, bytes_up, refused_files, location_refusals, clients (calls per
                                 client address)
  POST <base>/_emulator/reset    zero the counters
  POST <base>/_emulator/unlock   lift every lock, forget limit windows, past offences, the download location
  POST <base>/_emulator/fault    {"endpoint": "file/ls", "kind": "5xx|html|no_links|truncate|reset|flood",
                                 "nth": 1, "count": 1}: fail the nth next call of endpoint and count-1 more
  GET|POST <base>/_emulator/quota  read {"quota","used"}; POST {"bytes": N} sets the quota first
  GET  <base>/_emulator/client   the client address the per-IP rules see (check a --source-address set-up)

two hosts on one machine: bind the emulator to 127.0.0.1 (default) and give the second mount
--source-address 127.0.0.2 (any 127.x.y.z works on Linux loopback); per-IP limits (#412) and the
one-download-location rule (#887) then tell the mounts apart, per-account limits (#223) see both.
"""


def _field_value(text: str) -> tuple[str, Any]:
    """``FIELD=VALUE`` for an EmulatorConfig field, VALUE converted to the field's type."""
    import dataclasses

    name, sep, raw = text.partition("=")
    name = name.strip().replace("-", "_")
    fields = {f.name: f for f in dataclasses.fields(EmulatorConfig)}
    if not sep or name not in fields:
        raise argparse.ArgumentTypeError(f"expected FIELD=VALUE with FIELD one of: {', '.join(sorted(fields))}")
    kind = str(fields[name].type)
    raw = raw.strip()
    try:
        if "bool" in kind:
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(raw)
            return name, raw.lower() in ("1", "true", "yes", "on")
        if raw.lower() == "none" and "None" in kind:
            return name, None
        if "int" in kind:
            return name, parse_size(raw) if not raw.lstrip("-").isdigit() else int(raw)
        if "float" in kind:
            return name, float(raw)
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(f"{name}: bad value {raw!r} (a {kind})") from None
    return name, raw


_SIZE_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
               "KI": 1 << 10, "MI": 1 << 20, "GI": 1 << 30, "TI": 1 << 40}


def parse_size(text: str) -> int:
    """``"1000"``, ``"10G"`` (10·10⁹), ``"512Mi"`` (512·2²⁰), an optional trailing ``B`` → bytes."""
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT][iI]?)?[bB]?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1000, 10G, 512Mi)")
    return int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "").upper()])


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    """The EmulatorConfig the command line asks for: the profile, then the flags, then ``--set`` (last wins)."""
    knobs: dict[str, Any] = {
        "limits": not args.no_limits, "time_scale": args.time_scale, "latency": args.latency,
        "bandwidth": args.bandwidth, "flood_lock_seconds": args.flood_lock_seconds,
        "visibility_delay": args.visibility_delay}
    if args.quota is not None:
        knobs["quota"] = args.quota
    knobs.update(dict(args.set))
    return EmulatorConfig.profile(args.profile, **knobs)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not is_loopback(args.host):
        print(f"refusing non-loopback host {args.host!r}", file=sys.stderr)
        return 2
    if (args.tls_cert is None) != (args.tls_key is None):
        print("--tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    if args.seed is not None and not args.seed.is_dir():
        print(f"--seed {args.seed}: not a directory", file=sys.stderr)
        return 2
    state = args.state if args.state is not None else Path(tempfile.mkdtemp(prefix="fichier-emu-"))
    cfg = config_from_args(args)
    emu = Emulator(state, cfg)
    if args.seed is not None:
        if next(iter(emu.account.iter_all_files()), None) is not None:
            # seeding again would add every file a second time (1fichier allows duplicate names): a newcomer
            # who ran the README's emulator command twice saw every file twice, as "name (dup …)"
            print(f"note: --seed ignored: the state {state} holds an account already (a new --state starts over)",
                  file=sys.stderr)
        else:
            emu.seed(args.seed)

    hc = Config()
    host = args.host
    hc.bind = [f"[{host}]:{args.port}" if ":" in host else f"{host}:{args.port}"]
    hc.accesslog = None
    hc.errorlog = "-"
    hc.loglevel = "WARNING"
    # nginx's default; hypercorn's 5 s equals rclone's longest back-off, so rclone's reused
    # connections broke right after a flood lock (found by the fidelity test)
    hc.keep_alive_timeout = 75
    tls = args.tls_cert is not None
    if tls:
        hc.certfile = str(args.tls_cert)
        hc.keyfile = str(args.tls_key)

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            stop = trio.Event()

            async def on_signals() -> None:
                with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as sigs:
                    async for _ in sigs:
                        stop.set()
                        return

            nursery.start_soon(on_signals)
            binds = await nursery.start(lambda task_status: serve(emu.app, hc,  # type: ignore[arg-type]
                                                                  shutdown_trigger=stop.wait,
                                                                  task_status=task_status))
            url = binds[0]  # e.g. http://127.0.0.1:PORT (hypercorn reports the real port)
            if tls:
                url = "https://" + url.split("://", 1)[1]
            print(f"FICHIER_API_URL={url}/v1", flush=True)
            await stop.wait()
            nursery.cancel_scope.deadline = trio.current_time() + 5

    try:
        trio.run(run)
    except KeyboardInterrupt:
        pass
    finally:
        emu.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
