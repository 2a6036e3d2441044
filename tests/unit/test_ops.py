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
