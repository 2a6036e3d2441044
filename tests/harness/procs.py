"""Processes and mounts we start: stop by PID, unmount, abort a stuck FUSE connection, sample RSS."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any


def stop_proc(proc: subprocess.Popen[Any] | None, grace: float = 10.0) -> None:
    """Stop one process we started, by its PID: SIGTERM, then SIGKILL after ``grace`` seconds; close its pipes."""
    if proc is None:
        return
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)
        except ProcessLookupError:
            pass
    for pipe in (proc.stdout, proc.stderr, proc.stdin):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


def kill_group(proc: subprocess.Popen[Any]) -> None:
    """Kill a child started with ``start_new_session=True`` and everything in its process group (pgid = its PID)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def is_mounted(path: Path) -> bool:
    target = str(path.resolve())
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == target for line in f)


def unmount(path: Path) -> None:
    """Lazy FUSE unmount of ``path`` if it is mounted."""
    if is_mounted(path):
        subprocess.run(["fusermount3", "-u", "-z", str(path)], check=False, capture_output=True, timeout=30)


def fuse_abort(path: Path) -> bool:
    """Abort the FUSE connection of a mount (fails every pending request at once): a process stuck in a FUSE
    request cannot be killed until the file system answers. Needs fusectl mounted (:func:`mount_fusectl`)."""
    target = str(path.resolve())
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            if parts[4] == target:
                minor = parts[2].split(":")[1]
                ctl = Path("/sys/fs/fuse/connections") / minor / "abort"
                try:
                    ctl.write_text("1")
                    return True
                except OSError:
                    return False
    return False


def mount_fusectl() -> None:
    """Mount fusectl (call it inside a private mount namespace) so that :func:`fuse_abort` works."""
    conn = Path("/sys/fs/fuse/connections")
    with open("/proc/self/mounts") as f:
        if any(line.split()[1] == str(conn) for line in f):
            return
    subprocess.run(["mount", "-t", "fusectl", "fusectl", str(conn)], check=False, capture_output=True, timeout=30)


def proc_status_kib(pid: int, field: str) -> int | None:
    """A ``kB`` field of /proc/PID/status (VmRSS, VmHWM…), or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def vm_hwm_kib(pid: int) -> int | None:
    """Peak resident set size of a process so far (VmHWM), KiB."""
    return proc_status_kib(pid, "VmHWM")


def reset_hwm(pid: int) -> bool:
    """Reset a process's VmHWM to its current RSS (Linux ≥ 4.0: write 5 to clear_refs), so that a peak measured
    afterwards belongs to what runs afterwards. False when not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class RssSampler:
    """Samples a process's VmRSS every ``interval`` seconds in a thread; ``peak_kib`` and ``samples`` after stop().

    VmHWM gives the peak too, but only since the last :func:`reset_hwm`; the sampler also shows *when*."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{pid}", daemon=True)

    def _run(self) -> None:
        t0 = time.monotonic()
        while not self._stop.is_set():
            rss = proc_status_kib(self.pid, "VmRSS")
            if rss is None:
                break
            self.samples.append((time.monotonic() - t0, rss))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    @property
    def peak_kib(self) -> int | None:
        return max((s for _, s in self.samples), default=None)
