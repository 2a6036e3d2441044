"""Private files: everything fichierfs keeps on disk is readable by its owner only.

The cache directory holds pending file names, staged contents, and the permanent
``https://1fichier.com/?…`` links of uploaded files (enough to download a file that has no
password, §7), so every directory in it is 0700 and every file 0600, whatever the umask:

* :func:`restrict_umask` — the mount process creates everything with umask 077 (SQLite's
  ``-wal``/``-shm`` files, staging files, the rate history, log files);
* :func:`private_dir` / :func:`open_private` — explicit modes for code that creates cache
  entries (they do not rely on the umask);
* :func:`tighten` — at mount, an existing cache tree made by an older version (0755/0644)
  is brought down to 0700/0600.

Layering: imports nothing from fichierfs (any module may use it).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

__all__ = ["DIR_MODE", "FILE_MODE", "open_private", "private_dir", "restrict_umask", "tighten"]

DIR_MODE = 0o700
FILE_MODE = 0o600


def restrict_umask() -> int:
    """Set the process umask to 077 (group and others get nothing). Returns the old one."""
    return os.umask(0o077)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) mode 0700; an existing ``path`` is set to 0700.

    Parents that already exist are left alone (they may be ``~/.cache`` or ``/var/cache``).
    """
    missing = []
    p = Path(path)
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=DIR_MODE)
        except FileExistsError:
            pass
        os.chmod(d, DIR_MODE)
    if stat.S_IMODE(os.stat(path).st_mode) != DIR_MODE:
        os.chmod(path, DIR_MODE)
    return Path(path)


def open_private(path: Path, flags: int = os.O_RDWR | os.O_CREAT) -> int:
    """``os.open`` that creates the file 0600 (and tightens an existing one). Returns the fd."""
    fd = os.open(path, flags | os.O_CLOEXEC, FILE_MODE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            os.fchmod(fd, FILE_MODE)
    except OSError:
        os.close(fd)
        raise
    return fd


def tighten(root: Path) -> int:
    """Make every directory under ``root`` (``root`` included) 0700 and every file 0600.

    Symbolic links are not followed. Returns how many entries were changed.
    """
    changed = 0
    if not os.path.isdir(root):
        return 0
    for here, dirs, files in os.walk(root):
        for name, mode in [(here, DIR_MODE)] + [(os.path.join(here, d), DIR_MODE) for d in dirs] + \
                [(os.path.join(here, f), FILE_MODE) for f in files]:
            try:
                st = os.lstat(name)
            except FileNotFoundError:
                continue
            if stat.S_ISLNK(st.st_mode):
                continue
            if stat.S_IMODE(st.st_mode) & 0o077:
                os.chmod(name, mode if stat.S_ISDIR(st.st_mode) else FILE_MODE)
                changed += 1
    return changed
