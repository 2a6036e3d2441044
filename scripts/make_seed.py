#!/usr/bin/env python3
"""Build a seed tree of REAL files from this machine, for the demo, tests and benchmarks.

Layout (a few hundred files in about a dozen folders)::

    docs/<package>/...        Debian package documentation (/usr/share/doc)
    licenses/                 /usr/share/common-licenses
    images/                   PNG/SVG/JPEG icons and pictures from /usr/share
    python/idna/              a pure-Python package tree, importable from the mount
    archives/doc-bundle.tar.gz  a tarball of some of the docs
    data/inventory.sqlite     an SQLite database describing all of the above

Usage: make_seed.py DEST [--max-files N]
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sqlite3
import sys
import tarfile
from pathlib import Path

MAX_FILE = 4 << 20  # skip files over 4 MiB


def _copy(src: Path, dst: Path) -> bool:
    try:
        if not src.is_file() or src.is_symlink() or src.stat().st_size == 0 or src.stat().st_size > MAX_FILE:
            return False
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        return True
    except OSError:
        return False


def build(dest: Path, max_files: int = 320) -> dict[str, int]:
    """Fill ``dest`` (created if needed) and return a count of files per top folder."""
    dest.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}

    def add(kind: str, src: Path, rel: Path) -> None:
        if sum(counts.values()) < max_files and _copy(src, dest / kind / rel):
            counts[kind] = counts.get(kind, 0) + 1

    docs = Path("/usr/share/doc")
    pkgs = sorted(p for p in docs.iterdir() if p.is_dir() and not p.is_symlink()) if docs.is_dir() else []
    rich = [p for p in pkgs if sum(1 for f in p.rglob("*") if f.is_file()) >= 3][:14]
    for pkg in rich:
        for f in sorted(pkg.rglob("*"))[:15]:
            if f.is_file():
                add("docs", f, Path(pkg.name) / f.name)
    lic = Path("/usr/share/common-licenses")
    if lic.is_dir():
        for f in sorted(lic.iterdir())[:20]:
            add("licenses", f, Path(f.name))
    seen = 0
    for root in ("/usr/share/pixmaps", "/usr/share/icons", "/usr/share/pixmaps", "/usr/share/doc"):
        for f in sorted(Path(root).rglob("*")) if Path(root).is_dir() else []:
            if f.suffix.lower() in (".png", ".svg", ".jpg", ".jpeg", ".gif", ".xpm") and seen < 40:
                name = f"{seen:02d}-{f.name}"
                before = counts.get("images", 0)
                add("images", f, Path(name))
                seen += counts.get("images", 0) - before
    man = Path("/usr/share/man/man1")
    if man.is_dir():
        for f in sorted(man.iterdir())[:60]:
            add("manpages", f, Path(f.name))
    for mod in ("idna", "h11", "httpx"):
        spec = importlib.util.find_spec(mod)
        if spec and spec.origin:
            pkg_dir = Path(spec.origin).parent
            for f in sorted(pkg_dir.rglob("*.py")):
                add("python", f, Path(mod) / f.relative_to(pkg_dir))
    # a tarball of some docs
    (dest / "archives").mkdir(exist_ok=True)
    with tarfile.open(dest / "archives" / "doc-bundle.tar.gz", "w:gz") as tar:
        for pkg in rich[:3]:
            tar.add(pkg, arcname=pkg.name, recursive=True)
    counts["archives"] = 1
    # an SQLite database describing the tree
    (dest / "data").mkdir(exist_ok=True)
    db = dest / "data" / "inventory.sqlite"
    db.unlink(missing_ok=True)
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE files (path TEXT PRIMARY KEY, kind TEXT, size INTEGER)")
    rows = [(str(p.relative_to(dest)), p.relative_to(dest).parts[0], p.stat().st_size)
            for p in sorted(dest.rglob("*")) if p.is_file() and p != db]
    con.executemany("INSERT INTO files VALUES (?, ?, ?)", rows)
    con.commit()
    con.execute("VACUUM")
    con.close()
    counts["data"] = 1
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dest", type=Path)
    ap.add_argument("--max-files", type=int, default=320)
    args = ap.parse_args(argv)
    counts = build(args.dest, args.max_files)
    print(" ".join(f"{k}:{v}" for k, v in sorted(counts.items())), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
