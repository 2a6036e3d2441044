"""Where the API key comes from: ``$FICHIER_API_KEY``, a key file (0600), or the system keyring.

The key is as powerful as the account password (../shared/1fichier-api.md §1), so it is never
taken from the command line (it would show in ``/proc/*/cmdline``), never logged and only ever
held in a :class:`fichierfs.api.Secret`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from fichierfs.api import Secret
from fichierfs.errors import ConfigError

__all__ = ["ENV_VAR", "KEYRING_SERVICE", "load_api_key", "read_key_file"]

ENV_VAR = "FICHIER_API_KEY"
KEYRING_SERVICE = "fichierfs"
KEYRING_USER = "api-key"


def read_key_file(path: Path) -> Secret:
    """Read a key file, refusing one that group or others may read or write.

    Raises:
        ConfigError: missing, unreadable, empty, or permissions wider than 0600 (errno EINVAL).
    """
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(f"API key file {path}: {exc.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"API key file {path} is accessible by group/others (mode {stat.S_IMODE(st.st_mode):o}); "
            f"run: chmod 600 {path}"
        )
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"API key file {path}: {exc.strerror}") from None
    if not text:
        raise ConfigError(f"API key file {path} is empty")
    return Secret(text.splitlines()[0].strip())


def load_api_key(key_file: Path | None = None, *, use_keyring: bool = True) -> Secret:
    """Find the API key: an explicit key file first, then ``$FICHIER_API_KEY``, then the keyring.

    Raises:
        ConfigError: no source holds a key, or the key file is unsafe.
    """
    if key_file is not None:
        return read_key_file(Path(key_file))
    value = os.environ.get(ENV_VAR, "").strip()
    if value:
        return Secret(value)
    if use_keyring:
        try:
            import keyring

            stored = keyring.get_password(KEYRING_SERVICE, KEYRING_USER)
        except Exception:  # no usable keyring backend on this machine
            stored = None
        if stored:
            return Secret(stored)
    raise ConfigError(
        f"no API key: set ${ENV_VAR}, pass --api-key-file FILE (mode 0600), or run 'fichierfs login'"
    )
