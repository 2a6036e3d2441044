"""Helpers of the write workloads: wait until a mount has uploaded everything; make the destination folder."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import time
import urllib.request
from typing import Any

from bench_kit.common import NA_WRITE, PY, ROOT


def flush(spec: str) -> dict[str, Any]:
    """Wait until the mount has uploaded everything. spec = 'fichierfs:MNT' or 'rclone:URL'."""
    kind, _, arg = spec.partition(":")
    t0 = time.monotonic()
    if kind == "fichierfs":
        mnt = arg
        r = subprocess.run([PY, "-m", "fichierfs", "sync", mnt], check=False, capture_output=True, text=True, cwd=ROOT)
        if r.returncode != 0:
            raise RuntimeError(f"fichierfs sync failed rc={r.returncode}: {r.stderr[-500:]}")
        return {"flush": "fichierfs sync", "flush_s": time.monotonic() - t0}
    if kind == "rclone":
        url = arg.rstrip("/") + "/vfs/stats"
        while True:
            req = urllib.request.Request(url, data=b"{}", method="POST", headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as resp:
                doc = json.load(resp)
            dc = doc.get("diskCache", {})
            if not dc.get("uploadsInProgress") and not dc.get("uploadsQueued"):
                return {"flush": "rclone rc vfs/stats", "flush_s": time.monotonic() - t0}
            time.sleep(0.2)
    raise ValueError(spec)


def make_dest(dst: str) -> None:
    """mkdir the destination; a read-only mount prints an n/a result and exits 3."""
    try:
        os.mkdir(dst)
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSYS, errno.ENOTSUP):
            print(json.dumps({"na": f"{NA_WRITE} (mkdir: {os.strerror(exc.errno)})"}))
            raise SystemExit(3) from None
        raise


def na_or_error(stderr: str, tool: str) -> int:
    if "Read-only file system" in stderr or "Permission denied" in stderr:
        print(json.dumps({"na": f"{NA_WRITE} ({tool}: {stderr.strip().splitlines()[0][-200:]})"}))
        return 3
    print(json.dumps({"error": stderr[-800:]}))
    return 1
