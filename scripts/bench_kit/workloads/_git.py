"""Helpers of the git clone workloads: a deterministic ~250-file repository of real files, and the clone itself."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sysconfig
import time
from pathlib import Path
from typing import Any

from bench_kit.workloads._write import flush, make_dest, na_or_error

GIT_ENV = {"GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.org", "GIT_COMMITTER_NAME": "bench",
           "GIT_COMMITTER_EMAIL": "bench@example.org", "GIT_AUTHOR_DATE": "2024-06-09T12:00:00Z",
           "GIT_COMMITTER_DATE": "2024-06-09T12:00:00Z"}


def git_repo(dest: Path, files: int) -> None:
    """A git repository of ``files`` real source files (Python's own library, 25 per folder), one commit."""
    lib = Path(sysconfig.get_paths()["stdlib"])
    picked = [p for p in sorted(lib.rglob("*.py")) if p.is_file() and 0 < p.stat().st_size < 100_000][:files]
    for i, p in enumerate(picked):
        d = dest / f"pkg{i // 25}"
        d.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, d / p.name)
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", "init", "-q", str(dest)], check=True, env=env)
    subprocess.run(["git", "-C", str(dest), "add", "-A"], check=True, env=env)
    subprocess.run(["git", "-C", str(dest), "commit", "-q", "-m", "bench"], check=True, env=env)


def clone(repo: Path, dst: Path, *, loose: bool) -> None:
    """``git clone --no-local`` (git writes its object store as a network clone would, then checks out);
    ``loose``: the received pack is unpacked into loose objects (an object store over ~100 folders)."""
    subprocess.run(["git", "clone", "-q", "--no-local", str(repo), str(dst)], check=True, capture_output=True,
                   text=True)
    if loose:
        for pack in sorted((dst / ".git" / "objects" / "pack").glob("*.pack")):
            data = pack.read_bytes()
            pack.unlink()
            pack.with_suffix(".idx").unlink()
            subprocess.run(["git", "-C", str(dst), "unpack-objects", "-q"], input=data, check=True)


def tree_counts(root: Path) -> tuple[int, int]:
    """(folders including ``root``, files) under ``root``."""
    folders, files = 1, 0
    for _, dirnames, filenames in os.walk(root):
        folders += len(dirnames)
        files += len(filenames)
    return folders, files


def clone_worker(args: list[str], *, loose: bool) -> int:
    """Worker body: clone REPO into DST/clone, then wait until everything is uploaded (FLUSH spec)."""
    repo, dst, flush_spec, counts = args
    make_dest(dst)
    folders, files = (int(x) for x in counts.split(","))
    # what the clone writes (counted at build time), plus the destination folder made above
    out: dict[str, Any] = {"folders": folders + 1, "files": files}
    t0 = time.monotonic()
    try:
        clone(Path(repo), Path(dst) / "clone", loose=loose)
    except subprocess.CalledProcessError as exc:
        return na_or_error(str(exc.stderr or exc), "git clone")
    out["clone_s"] = time.monotonic() - t0
    out.update(flush(flush_spec))
    print(json.dumps(out))
    return 0
