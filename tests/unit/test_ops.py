"""The pyfuse3 adapter's error translation: FichierError → its errno; a bug → EIO, logged."""

from __future__ import annotations

import errno
import logging

import pyfuse3
import pytest

from fichierfs.errors import FloodLocked, NotFound
from fichierfs.ops import fuse_errors


@fuse_errors
async def raises(exc: BaseException) -> None:
    raise exc


@fuse_errors
async def fine() -> int:
    return 7


async def test_known_errors_keep_their_errno(caplog: pytest.LogCaptureFixture) -> None:
    assert await fine() == 7
    with pytest.raises(pyfuse3.FUSEError) as e:
        await raises(NotFound("gone", code=469))
    assert e.value.errno == errno.ENOENT
    with pytest.raises(pyfuse3.FUSEError) as e:
        await raises(FloodLocked("Flood detected #412", code=412))
    assert e.value.errno == errno.EAGAIN


async def test_a_bug_becomes_eio_with_traceback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    with pytest.raises(pyfuse3.FUSEError) as e:
        await raises(ZeroDivisionError("oops"))
    assert e.value.errno == errno.EIO
    assert "unexpected error" in caplog.text and "ZeroDivisionError" in caplog.text
    assert any(r.exc_info for r in caplog.records)


def test_one_error_tree_every_class_has_errno_and_level() -> None:
    """The four errors that used to live in meta, vfs, names and control are in errors.py now."""
    import inspect

    import fichierfs.errors as errors
    from fichierfs import control, meta, names, vfs

    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, errors.FichierError)]
    assert {"NoEntry", "FsError", "BadName", "MountGone"} <= {c.__name__ for c in classes}
    for cls in classes:
        assert cls.__module__ == "fichierfs.errors"
        assert isinstance(cls.errno, int) and cls.errno > 0, cls
        assert cls.level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL), cls
    # the old import places still work and name the same classes
    assert meta.NoEntry is errors.NoEntry and vfs.NoEntry is errors.NoEntry
    assert vfs.FsError is errors.FsError and names.NameError_ is errors.BadName
    assert control.MountGone is errors.MountGone and issubclass(errors.MountGone, errors.ConfigError)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        ("NoEntry", errno.ENOENT),
        ("FsError", errno.EROFS),
        ("BadName", errno.ENAMETOOLONG),
    ],
)
async def test_core_errors_become_their_errno(exc: str, expected: int) -> None:
    import fichierfs.errors as errors

    made = {
        "NoEntry": lambda: errors.NoEntry("no such name"),
        "FsError": lambda: errors.FsError(errno.EROFS),
        "BadName": lambda: errors.BadName("too long", errno.ENAMETOOLONG),
    }[exc]()
    with pytest.raises(pyfuse3.FUSEError) as e:
        await raises(made)
    assert e.value.errno == expected
