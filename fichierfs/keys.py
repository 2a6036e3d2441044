"""Where the API key comes from: ``$FICHIER_API_KEY``, a key file (0600), or the system keyring.

The key is as powerful as the account password (docs/1fichier-api.md §1), so it is never
taken from the command line (it would show in ``/proc/*/cmdline``), never logged and only ever
held in a :class:`fichierfs.api.Secret`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from fichierfs.api import Secret
from fichierfs.errors import ConfigError

__all__ = ["ENV_VAR", "KEYRING_SERVICE", "load_api_key", "read_key_file", "store_api_key", "delete_api_key",
           "key_source", "keyring_backend"]

ENV_VAR = "FICHIER_API_KEY"
KEYRING_SERVICE = "fichierfs"
KEYRING_USER = "api-key"


def read_key_file(path: Path) -> Secret:
    """Read a key file, refusing one that group or others may read or write, or another user owns.

    Raises:
        ConfigError: missing, unreadable, empty, not a regular file, owned by someone else than
            the caller or root, or permissions wider than 0600 (errno EINVAL).
    """
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(f"API key file {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"API key file {path} is not a regular file")
    if st.st_uid not in (os.geteuid(), 0):
        raise ConfigError(f"API key file {path} belongs to another user (uid {st.st_uid}); it must be yours or root's")
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
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if len(lines) != 1 or any(c.isspace() for c in lines[0]):
        raise ConfigError(f"API key file {path} must hold the key alone, on one line (it has {len(lines)} "
                          "non-empty lines or spaces in the key)")
    return Secret(lines[0])


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
        stored = _keyring_get()
        if stored:
            return Secret(stored)
    raise ConfigError(
        f"no API key: set ${ENV_VAR}, pass --api-key-file FILE (mode 0600), or run 'fichierfs login'"
    )


def key_source(key_file: Path | None = None) -> str:
    """Which source :func:`load_api_key` would use: ``"file"``, ``"env"``, ``"keyring"`` or ``"none"``."""
    if key_file is not None:
        return "file"
    if os.environ.get(ENV_VAR, "").strip():
        return "env"
    return "keyring" if _keyring_get() else "none"


def _keyring_get() -> str | None:
    try:
        import keyring

        return keyring.get_password(KEYRING_SERVICE, KEYRING_USER)
    except Exception:  # no usable keyring backend on this machine, or a locked one
        return None


def _no_backend(exc: Exception) -> ConfigError:
    return ConfigError(
        f"no usable system keyring ({type(exc).__name__}: {exc}). Use a desktop session's keyring "
        "(GNOME Keyring, KWallet) or a key file instead: --api-key-file FILE (mode 0600)"
    )


def keyring_backend() -> str:
    """The usable keyring backend's name, checked before asking anyone for a key.

    Raises:
        ConfigError: no usable backend (keyring's "fail" backend, or none with a positive priority).
    """
    try:
        import keyring
        from keyring.backends import fail

        backend = keyring.get_keyring()
    except Exception as exc:
        raise _no_backend(exc) from None
    inner = getattr(backend, "backends", None)  # the chainer: usable if one of its backends is
    usable = [b for b in inner if not isinstance(b, fail.Keyring)] if inner is not None else \
        ([] if isinstance(backend, fail.Keyring) else [backend])
    if not usable or all(getattr(b, "priority", 1) <= 0 for b in usable):
        raise ConfigError("no usable system keyring on this machine (no Secret Service, KWallet or other "
                          "backend). Use a key file instead: --api-key-file FILE (mode 0600), or $FICHIER_API_KEY")
    return type(backend).__module__ + "." + type(backend).__name__


def store_api_key(key: Secret) -> str:
    """Store ``key`` in the system keyring (service ``fichierfs``), replacing any previous one.

    Returns:
        The keyring backend's name (for the confirmation message; never the key).

    Raises:
        ConfigError: an empty key, or no usable keyring backend.
    """
    value = key.reveal().strip()
    if not value or any(c.isspace() for c in value):
        raise ConfigError("that is not an API key (empty, or contains spaces)")
    try:
        import keyring

        keyring.set_password(KEYRING_SERVICE, KEYRING_USER, value)
        backend = keyring.get_keyring()
    except Exception as exc:
        raise _no_backend(exc) from None
    return type(backend).__module__ + "." + type(backend).__name__


def delete_api_key() -> bool:
    """Remove the key from the system keyring. Returns False if none was stored.

    Raises:
        ConfigError: no usable keyring backend.
    """
    keyring_backend()  # no usable backend: the same plain message as login's, not keyring's own
    try:
        import keyring
        from keyring.errors import PasswordDeleteError

        try:
            keyring.delete_password(KEYRING_SERVICE, KEYRING_USER)
        except PasswordDeleteError:
            return False
    except ConfigError:
        raise
    except Exception as exc:
        raise _no_backend(exc) from None
    return True
