"""fstab and systemd paths for real: mount(8) with a temporary fstab, the mount.fichierfs
helper, sd_notify readiness, the shipped units' syntax and their ExecStop drain.

What cannot run here: systemd is not PID 1 in the sandbox, so the units are checked with
``systemd-analyze verify`` and their ExecStart/ExecStop command lines are run by the test
itself (with NOTIFY_SOCKET pointing at a socket the test listens on), not by systemd.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.mount.conftest import KEY, MOUNT_SCALE, PY, ROOT, _stop, is_mounted, run_emulator

VENV_BIN = Path(sys.executable).parent
FICHIERFS = VENV_BIN / "fichierfs"
HELPER = VENV_BIN / "mount.fichierfs"
SBIN_LINK = Path("/sbin/mount.fuse.fichierfs")


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("fstab")
    seed = base / "seed"
    (seed / "Docs" / "sub").mkdir(parents=True)
    (seed / "Docs" / "hello.txt").write_text("hello from fstab\n")
    (seed / "Docs" / "sub" / "b.txt").write_text("b\n")
    with run_emulator(base / "state", seed) as e:
        yield e


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    k = tmp_path / "key"
    k.write_text(KEY + "\n")
    k.chmod(0o600)
    return k


def _mount_cmd(fstab: Path, mnt: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", "-T", str(fstab), str(mnt)], capture_output=True, text=True, timeout=90)


@contextmanager
def _cleanup(mnt: Path) -> Iterator[None]:
    try:
        yield
    finally:
        if is_mounted(mnt):
            subprocess.run(["umount", "-l", str(mnt)], check=False)


def _opts(emu, key_file: Path, log: Path, extra: str = "") -> str:
    return (f"_netdev,nofail,noauto,x-systemd.automount,api_key_file={key_file},api_url={emu.url},"
            f"budget_scale={MOUNT_SCALE},log_file={log}{extra}")


def _wait_gone(mnt: Path, log: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_mounted(mnt) and "was unmounted" in (log.read_text() if log.exists() else ""):
            return
        time.sleep(0.05)
    raise AssertionError(f"the daemon did not end after umount:\n{log.read_text() if log.exists() else ''}")


@pytest.fixture
def sbin_helper() -> Iterator[Path]:
    """/sbin/mount.fuse.fichierfs → the venv's mount.fichierfs, for the test only."""
    if not HELPER.exists():
        pytest.skip(f"{HELPER} missing: reinstall fichierfs (pip install -e .)")
    created = False
    if SBIN_LINK.is_symlink() or SBIN_LINK.exists():
        if not (SBIN_LINK.is_symlink() and Path(os.readlink(SBIN_LINK)) == HELPER):
            pytest.skip(f"{SBIN_LINK} exists and is not ours: not touching it")
    else:
        SBIN_LINK.symlink_to(HELPER)
        created = True
    try:
        yield SBIN_LINK
    finally:
        if created:
            SBIN_LINK.unlink(missing_ok=True)


def test_fstab_typed_form_via_mount_helper(emu, key_file: Path, tmp_path: Path, sbin_helper: Path) -> None:
    """`fichierfs /mnt fuse.fichierfs …`: mount(8) → /sbin/mount.fuse.fichierfs; umount(8) ends it."""
    mnt, log, fstab = tmp_path / "mnt", tmp_path / "m.log", tmp_path / "fstab"
    mnt.mkdir()
    fstab.write_text(f"# test fstab\n/Docs {mnt} fuse.fichierfs {_opts(emu, key_file, log)} 0 0\n")
    with _cleanup(mnt):
        res = _mount_cmd(fstab, mnt)
        assert res.returncode == 0, res.stderr + (log.read_text() if log.exists() else "")
        assert is_mounted(mnt)
        line = next(ln for ln in open("/proc/self/mounts") if f" {mnt} " in ln)
        assert line.split()[2] == "fuse.fichierfs"
        assert (mnt / "hello.txt").read_text() == "hello from fstab\n"
        assert (mnt / "sub" / "b.txt").read_text() == "b\n"
        res = subprocess.run(["umount", str(mnt)], capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        _wait_gone(mnt, log)
    assert KEY not in log.read_text()


def test_fstab_classic_hash_form_via_mount_fuse3(emu, key_file: Path, tmp_path: Path) -> None:
    """`fichierfs#/Docs /mnt fuse …`: mount.fuse3 runs `fichierfs /Docs /mnt -o …` (given by path here,
    since mount(8) only searches its fixed PATH and the test must not install into /usr)."""
    if shutil.which("mount.fuse3") is None and not Path("/sbin/mount.fuse3").exists():
        pytest.skip("mount.fuse3 missing (apt-get install fuse3)")
    mnt, log, fstab = tmp_path / "mnt", tmp_path / "m.log", tmp_path / "fstab"
    mnt.mkdir()
    fstab.write_text(f"{FICHIERFS}#/Docs {mnt} fuse {_opts(emu, key_file, log)} 0 0\n")
    with _cleanup(mnt):
        res = _mount_cmd(fstab, mnt)
        assert res.returncode == 0, res.stderr + (log.read_text() if log.exists() else "")
        assert (mnt / "hello.txt").read_text() == "hello from fstab\n"
        assert subprocess.run(["umount", str(mnt)], timeout=30).returncode == 0
        _wait_gone(mnt, log)


def test_fstab_unknown_option_and_unsafe_key_are_refused(emu, key_file: Path, tmp_path: Path,
                                                         sbin_helper: Path) -> None:
    mnt, log, fstab = tmp_path / "mnt", tmp_path / "m.log", tmp_path / "fstab"
    mnt.mkdir()
    fstab.write_text(f"/Docs {mnt} fuse.fichierfs {_opts(emu, key_file, log, ',frobnicate=3')} 0 0\n")
    with _cleanup(mnt):
        res = _mount_cmd(fstab, mnt)
        assert res.returncode != 0 and not is_mounted(mnt)
        assert "unknown mount option -o frobnicate" in res.stderr
        key_file.chmod(0o644)
        fstab.write_text(f"/Docs {mnt} fuse.fichierfs {_opts(emu, key_file, log)} 0 0\n")
        res = _mount_cmd(fstab, mnt)
        assert res.returncode != 0 and not is_mounted(mnt)
        assert "chmod 600" in res.stderr and KEY not in res.stderr


def test_sd_notify_ready_only_once_live(emu, tmp_path: Path) -> None:
    """Type=notify: READY=1 (with MAINPID) arrives on $NOTIFY_SOCKET only when the mount is live."""
    mnt, log, sock_path = tmp_path / "mnt", tmp_path / "m.log", tmp_path / "notify.sock"
    mnt.mkdir()
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(str(sock_path))
    srv.settimeout(60)
    env = {**os.environ, "FICHIER_API_KEY": KEY, "NOTIFY_SOCKET": str(sock_path)}
    cmd = [PY, "-m", "fichierfs", "mount", "-f", "--api-url", emu.url, "--budget-scale", str(MOUNT_SCALE),
           "--remote-folder", "/Docs", "--log-file", str(log), str(mnt)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        msg = srv.recv(4096).decode()
        live_at_ready = is_mounted(mnt)
        assert "READY=1" in msg.split("\n"), msg
        assert f"MAINPID={proc.pid}" in msg and "STATUS=mounted /Docs" in msg
        assert live_at_ready, "READY=1 came before the kernel mount"
        assert (mnt / "hello.txt").read_text() == "hello from fstab\n"
    finally:
        srv.close()
        if is_mounted(mnt):
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)
        _stop(proc, 20)


def _unit_lines(unit: Path, key: str) -> list[str]:
    return [ln.split("=", 1)[1] for ln in unit.read_text().splitlines() if ln.startswith(key + "=")]


def _localise(unit_text: str) -> str:
    return unit_text.replace("/usr/local/bin/fichierfs", str(FICHIERFS))


@pytest.mark.parametrize("unit", ["fichierfs@.service", "fichierfs-user.service"])
def test_units_verify(unit: str, tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze missing (apt-get install systemd)")
    src = ROOT / "contrib" / unit
    text = src.read_text()
    assert re.search(r"^Type=notify$", text, re.M) and re.search(r"^NotifyAccess=main$", text, re.M)
    assert any(" mount -f " in ln for ln in _unit_lines(src, "ExecStart"))
    assert any("umount --wait" in ln for ln in _unit_lines(src, "ExecStop"))
    d = tmp_path / "units"
    d.mkdir()
    (d / unit).write_text(_localise(text))  # point ExecStart at this checkout's fichierfs
    env = dict(os.environ)
    if unit == "fichierfs@.service":
        (d / "fichierfs@mnt-1f.service").symlink_to(unit)
        cmd = [tool, "verify", "--man=no", str(d / "fichierfs@mnt-1f.service")]
    else:
        (d / "fichierfs.service").write_text(_localise(text))
        run = tmp_path / "xdg"
        run.mkdir(mode=0o700)
        env["XDG_RUNTIME_DIR"] = str(run)
        cmd = [tool, "--user", "verify", "--man=no", str(d / "fichierfs.service")]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    problems = [ln for ln in (res.stdout + res.stderr).splitlines() if "fichierfs" in ln]
    assert res.returncode == 0 and not problems, res.stdout + res.stderr


def test_unit_lifecycle_start_notify_status_execstop_drains(emu, key_file: Path, tmp_path: Path) -> None:
    """Run the system unit's ExecStart and ExecStop the way systemd would (%f = the mount point)."""
    unit = ROOT / "contrib" / "fichierfs@.service"
    mnt, log, sock_path = tmp_path / "mnt", tmp_path / "m.log", tmp_path / "notify.sock"
    mnt.mkdir()

    def expand(line: str) -> list[str]:
        line = _localise(line).replace("%f", str(mnt)).replace("/etc/fichierfs/key", str(key_file))
        opts = (f"--api-url {emu.url} --budget-scale {MOUNT_SCALE} --remote-folder /Docs --log-file {log} "
                f"--cache-dir {tmp_path / 'cache'}")
        return line.replace("$FICHIERFS_OPTS", opts).split()

    start, stop = expand(_unit_lines(unit, "ExecStart")[0]), expand(_unit_lines(unit, "ExecStop")[0])
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(str(sock_path))
    srv.settimeout(60)
    env = {k: v for k, v in os.environ.items() if k != "FICHIER_API_KEY"}
    proc = subprocess.Popen(start, env={**env, "NOTIFY_SOCKET": str(sock_path)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        assert "READY=1" in srv.recv(4096).decode()
        assert is_mounted(mnt)
        assert (mnt / "hello.txt").read_text() == "hello from fstab\n"
        st = subprocess.run([str(FICHIERFS), "status", "--json", str(mnt)], capture_output=True, text=True, timeout=30)
        assert st.returncode == 0, st.stderr
        doc = json.loads(st.stdout)
        assert doc["api"]["breaker"] == "closed" and doc["api"]["calls"].get("download/get_token", 0) >= 1
        table = subprocess.run([str(FICHIERFS), "status", str(mnt)], capture_output=True, text=True, timeout=30)
        assert table.returncode == 0 and "API calls this session" in table.stdout
        t0 = time.monotonic()
        sync = subprocess.run([str(FICHIERFS), "sync", str(mnt)], capture_output=True, text=True, timeout=30)
        assert sync.returncode == 0 and time.monotonic() - t0 < 10, sync.stderr  # nothing pending: at once
        payload = os.urandom(300_000)
        try:  # the write side may be absent (read-only mount): then there is nothing to drain
            (mnt / "written-before-stop.bin").write_bytes(payload)
            wrote = True
        except OSError:
            wrote = False
        up_before = emu.stats()["bytes_up"]
        res = subprocess.run(stop, capture_output=True, text=True, timeout=120)  # ExecStop: drain, then unmount
        assert res.returncode == 0, res.stderr
        assert not is_mounted(mnt)
        if wrote:  # drained before the unmount: the bytes reached 1fichier
            assert emu.stats()["bytes_up"] - up_before >= len(payload)
        assert proc.wait(30) == 0  # the main process ends by itself: systemd sees a clean stop
    finally:
        srv.close()
        if is_mounted(mnt):
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)
        _stop(proc, 20)
    assert KEY not in log.read_text()
